"use strict";
// Say why we are back on the form after a failed attempt.
if (new URLSearchParams(window.location.search).has("failed")) {
  document.getElementById("failed").hidden = false;
}
