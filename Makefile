# Everything a fresh machine needs is installed by these targets themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The demo/test checkpoint (random weights, built locally: no model hub needed).
TINY_CKPT := .cache/checkpoints/tiny

.PHONY: install serve demo test browser checkpoint clean

install: $(STAMP)

# Re-installs only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

checkpoint: $(TINY_CKPT)/config.json

$(TINY_CKPT)/config.json: $(STAMP) deployments/checkpoint.py
	$(PY) -m deployments.checkpoint --size tiny $(TINY_CKPT)

# Production app (real model from the hub, one replica per GPU) on http://127.0.0.1:8000
serve: $(STAMP)
	$(PY) -m serve_app.run serve_config.yaml

# Same app with the tiny random-weight checkpoint: runs offline, on CPU too.
demo: $(STAMP) checkpoint
	$(PY) -m serve_app.run configs/demo.yaml

# Headless Chromium for the UI tests (Debian's package; no browser download), and a CJK font so
# the test screenshots of the Chinese/Japanese page are readable.
BROWSER_PACKAGES := chromium fonts-wqy-zenhei
browser:
	@dpkg -s $(BROWSER_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES) >/dev/null; }

# Two pytest-xdist workers: the shared test cluster's tests in one, everything else beside them
# (tests/conftest.py says how they are grouped).
TEST_WORKERS ?= 2

# pytest exits 5 when it collected no test: that counts as a failure.
test: $(STAMP) checkpoint browser
	@$(PY) -m pytest tests -n $(TEST_WORKERS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no test was collected" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) .cache outputs test-artifacts
