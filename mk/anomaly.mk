# On-device anomaly detection (x0node/anomaly/, models/). Tests and `x0node model eval` use only the
# committed model files; `make model` retrains and re-exports them in a separate training venv
# (tensorflow-cpu, see models/requirements-train.txt), never installed on the device.
BENCHES += bench/anomaly.py
TRAIN_VENV := build/train-venv
MODEL_EPOCHS ?= 20

.PHONY: model model-eval
$(TRAIN_VENV)/.stamp: models/requirements-train.txt
	[ -x $(TRAIN_VENV)/bin/python ] || $(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install -q -r models/requirements-train.txt
	@touch $@

model: $(TRAIN_VENV)/.stamp  ## retrain the anomaly GNN + MLP baseline, export .tflite, thresholds, checksums
	PYTHONPATH=.:lab nice $(TRAIN_VENV)/bin/python models/train.py --epochs $(MODEL_EPOCHS) --out models
	$(PY) -m x0node model eval

model-eval: deps  ## evaluate every detector on the held-out scenarios
	$(PY) -m x0node model eval
