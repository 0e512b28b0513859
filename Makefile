# make demo: set up, build the center-pixel model, explain a bundled image with every method.
# make test: set up, build the center-pixel model, install Chromium (apt-get), run the test suite.
# make docs: the documentation site (mkdocs-material) into site/.
# make models: every model the docs use (center-pixel, center-pixel CNN, digits CNN, the example
# residual network; about 4 minutes).
PYTHON ?= $(shell command -v python3.11 2>/dev/null)
VENV := .venv
PY := $(VENV)/bin/python
MODELS := models/center_pixel.h5
MORE_MODELS := models/center_cnn.h5 models/digits.h5 models/residual_digits.pt
BUILDER := $(VENV)/.installed create_model.py settings.py $(wildcard heatkit/testmodels/*.py) heatkit/model/twins.py

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test install models browser docs clean

demo: $(MODELS)
	$(PY) heatmap_script.py -ip images/chelsea.png -hm all

# worksteal: an idle worker takes tests queued on the other, so that the long ones left at the end
# do not run one at a time (the suite took 250 s here where it took 274 to 290 s without it)
test: $(MODELS) browser
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=15

# the documentation site, from docs/ into site/
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# Debian's Chromium, for the test that opens report.html in a real browser
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium (apt-get)"; \
		$(SUDO) apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y --no-install-recommends chromium >/dev/null; } || \
		echo "make: could not install chromium; the report's browser test will be skipped"; }

install: $(VENV)/.installed

# lxt 2.1 (AttnLRP's authors' implementation, which the tests check ours against) goes in without
# its dependencies: transformers, bitsandbytes and open_clip serve only its language models.
$(VENV)/.installed: requirements.txt pyproject.toml Makefile
	@test -n "$(PYTHON)" || { echo "make: no python3.11 found; innvestigate 2.1.2 needs Python 3.11. Install it or run: make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps lxt==2.1
	touch $@

models: $(MODELS) $(MORE_MODELS)

models/center_pixel.h5: $(BUILDER)
	$(PY) create_model.py

models/center_cnn.h5: $(BUILDER)
	$(PY) create_model.py --model center_cnn

models/digits.h5: $(BUILDER)
	$(PY) create_model.py --model digits

models/residual_digits.pt: $(VENV)/.installed examples/residual_digits.py
	$(PY) examples/residual_digits.py $@

clean:
	rm -rf $(VENV) models/*.h5 models/*.pt models/*.json site
