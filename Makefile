# The two commands of the set-up contract: `make demo` and `make test`.
# Everything they need is installed here, from scratch, into .venv.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test chromium sandbox benchmarks clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium renders the HTML leaderboard in a test; where it cannot be installed the
# test is skipped with its reason.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  ( command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) ) || \
	  echo "chromium not installed: the HTML rendering test will be skipped"

# Bubblewrap gives the code verifier its sandbox (namespaces, read-only filesystem view). Without
# it the code tests are skipped with the verifier's one-line reason.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || \
	  ( command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	    (apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null) ) || \
	  echo "bubblewrap not installed: the code sandbox tests will be skipped"

demo: install
	$(VENV)/bin/prime-rl train

test: install chromium sandbox
	$(PY) -m pytest -q -p no:cacheprovider

benchmarks: install
	@echo "each script in benchmarks/ prints its reproducing command; see BENCHMARKS.md"

clean:
	rm -rf $(VENV) .cache build *.egg-info
