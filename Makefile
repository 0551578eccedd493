# The two commands a newcomer needs: `make run` and `make test`.
# Each sets up .venv (a plain, non-editable install of this checkout) first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 9092

.PHONY: run demo test trial pytest lint bench fuzz soak clean

$(BIN)/twist: setup.cfg pyproject.toml $(shell find gatekeeper twisted_plugins -type f -not -name '*.pyc' -not -path '*/__pycache__/*')
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '.[test,dev,postgres]'
	touch $@

# Start gatekeeper on its embedded defaults (etc/gatekeeper.ini has every
# option commented out but the sample directory): the doorman on
# 127.0.0.1:$(PORT), AMI off.  ARGS='--app echo' for the echo application.
run: $(BIN)/twist
	$(BIN)/twist gatekeeper --listen tcp:$(PORT):interface=127.0.0.1 $(ARGS)

# One visit from gate to door against a simulated Asterisk (about 20 s, no PBX),
# printed as a timeline of both legs and the visit's access-log row.
demo: $(BIN)/twist
	$(BIN)/gatekeeper-sim demo $(ARGS)

# The whole suite, under trial and under pytest (it is written for both).
test: $(BIN)/twist
	$(BIN)/python -m twisted.trial tests
	$(BIN)/python -m pytest -q -rs tests

trial: $(BIN)/twist
	$(BIN)/python -m twisted.trial tests

pytest: $(BIN)/twist
	$(BIN)/python -m pytest -q -rs tests

lint: $(BIN)/twist
	$(BIN)/ruff check gatekeeper tests twisted_plugins bench
	$(BIN)/ruff format --check gatekeeper tests twisted_plugins bench

bench: $(BIN)/twist
	$(BIN)/python -m bench.codec

# Coverage-guided fuzzing of the frame decoder and the protocol with the
# registry (atheris); RUNS inputs, JOBS processes, findings in var/fuzz/.
fuzz: $(BIN)/twist
	$(BIN)/pip install --quiet '.[fuzz]'
	nice -n 19 $(BIN)/python -m tests.fuzz.run --runs $(or $(RUNS),1000000) --jobs $(or $(JOBS),1)

# Mixed visits at a steady concurrency with drops and reconnects, checking
# memory, context and records (bench/soak.py): 30 minutes, or ARGS=--ci for
# the 2-minute version CI runs.
soak: $(BIN)/twist
	$(BIN)/python -m bench.soak $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info _trial_temp* twisted_plugins/dropin.cache
