# make demo: set up, build the models, explain a bundled image with every method.
# make test: set up, build the models, run the test suite.
PYTHON ?= $(shell command -v python3.11 2>/dev/null)
VENV := .venv
PY := $(VENV)/bin/python
MODELS := models/center_pixel.h5

.PHONY: demo test install models clean

demo: $(MODELS)
	$(PY) heatmap_script.py -ip images/chelsea.png -hm all

test: $(MODELS)
	$(PY) -m pytest -q

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	@test -n "$(PYTHON)" || { echo "make: no python3.11 found; innvestigate 2.1.2 needs Python 3.11. Install it or run: make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

models: $(MODELS)

$(MODELS): $(VENV)/.installed create_model.py settings.py core/center_pixel.py core/keras_models.py core/torch_models.py core/verify.py
	$(PY) create_model.py

clean:
	rm -rf $(VENV) models/*.h5 models/*.pt models/*.json
