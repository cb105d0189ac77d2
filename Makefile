# ser-edge developer tasks (GNU make). `make` alone lists the targets.
#
# On a fresh Debian 12 / Raspberry Pi OS machine (./bootstrap installs make first, with sudo only when not root):
#   make demo     the few system packages the demo needs, a venv with the device install, replays of the bundled samples
#   make test     every system package the tests need, a venv with the train and dev extras, the test suite
# Tests read real audio from ../shared/data (the shared folder beside the repository).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
MODEL ?= models/emotion4-conv1d.tflite
SAMPLE := edge/samples/speech-sample.wav
MQTT_PORT ?= 1883
BENCH_ARGS ?=

# apt needs root: use sudo only when we are not root already.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get
# The demo replays files through `ser-edge replay`: Python with venv, and libsndfile for soundfile on
# machines its wheel does not bundle it for (32-bit ARM). It opens no microphone (PortAudio is loaded
# only for one) and needs no broker (it publishes only if one already answers).
DEMO_PACKAGES := python3 python3-venv libsndfile1
# The tests and development besides: mosquitto (the tests start their own brokers; mosquitto_passwd
# makes their password file), PortAudio and the ALSA tools and plugins (microphone tests), systemd
# (systemd-analyze verifies the unit file), espeak-ng and sox (`make sample`), openssl (the TLS tests'
# throwaway CA).
DEV_PACKAGES := mosquitto mosquitto-clients libportaudio2 alsa-utils libasound2-plugins systemd espeak-ng sox openssl
APT_PACKAGES := $(DEMO_PACKAGES) $(DEV_PACKAGES)

PIP := $(VENV)/bin/pip --disable-pip-version-check -q

.PHONY: help deps deps-demo venv demo test check lint bench model screen corpus sample pi-check

help: ## list the targets
	@echo "ser-edge: make TARGET"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 12

# apt_install PACKAGES: install those not installed yet (one apt-get update only when some are missing).
define apt_install
	@missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(APT) update -q && $(APT) install -y -q --no-install-recommends $$missing; \
	else echo "system packages: all installed"; fi
endef

deps: ## install the system packages of the tests and development (apt-get; sudo if not root); skipped when all are installed
	$(call apt_install,$(APT_PACKAGES))

deps-demo: ## install only the system packages the demo needs (python3, python3-venv, libsndfile1)
	$(call apt_install,$(DEMO_PACKAGES))

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Stamps, so a second `make test` does not reinstall; editing pyproject.toml reinstalls.
$(VENV)/.installed-base: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-all: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e '.[train,dev]'
	@touch $@ $(VENV)/.installed-base

venv: deps $(VENV)/.installed-all ## create .venv with the train and dev extras (editable install)

# The demo: 24 real CREMA-D clips of two actors held out of the model's training (edge/samples/crema-d,
# with its ATTRIBUTION.md) played as one stream, what each is and what the model heard, right or wrong,
# a tally (UA, chance); then the synthetic espeak-ng sample. edge/samples/demo.py drives `ser-edge replay`
# and reads its JSON events. The broker probe uses 127.0.0.1: a minimal system may not resolve "localhost".
demo: deps-demo $(VENV)/.installed-base ## replay real CREMA-D clips the model never trained on (acted vs heard), then the synthetic sample; publish if a broker is on localhost:1883
	@test -f $(MODEL) || { echo "no model at $(MODEL): run 'make model' or pass MODEL=path.tflite" >&2; exit 1; }
	@if $(VENV)/bin/python -c 'import socket, sys; s = socket.socket(); s.settimeout(1); sys.exit(s.connect_ex(("127.0.0.1", $(MQTT_PORT))))'; then \
		sink=both; echo "broker on localhost:$(MQTT_PORT): printing and publishing (watch with: $(VENV)/bin/ser-edge listen)"; \
	else sink=stdout; echo "no broker on localhost:$(MQTT_PORT): printing only"; fi; \
	echo "model: $(MODEL)"; echo; \
	$(VENV)/bin/python edge/samples/demo.py --model $(MODEL) --mqtt-port $(MQTT_PORT) --sink $$sink

test: deps venv ## run the whole test suite, as CI does (real mosquitto, real audio from ../shared/data)
	@rm -rf build  # setuptools' build/lib would keep a renamed model in the wheel the packaging test builds
	$(VENV)/bin/python -m pytest -q

# The tests marked slow (pyproject.toml) train models or run long subprocesses; `make test` runs them too.
check: deps venv ## the fast tests a developer runs between edits: all but the slow ones (a few minutes)
	@rm -rf build
	$(VENV)/bin/python -m pytest -q -m "not slow"

# Root only (mmdebstrap, chroot, binfmt_misc). The root file system is kept in /var/cache/ser-edge-pi-check.
ARCHES ?= arm64
pi-check: $(VENV)/.installed-base ## install and run on a Raspberry Pi's software: Debian arm64 under qemu (ARCHES="arm64 armhf"); one line per step
	ARCHES="$(ARCHES)" .ci/pi-check

lint: $(VENV)/.installed-all ## ruff
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed-all ## benchmark the pipeline on 60 min of speech and silence built from ../shared/data (BENCH_ARGS="--minutes 5" builds less; --help lists the options)
	$(VENV)/bin/python tests/benchmarks/bench_pipeline.py --model $(MODEL) $(BENCH_ARGS)

# The shipped recipe: the five corpora the shipped model was trained on (CORPORA=all: the ten of
# ../shared/data/README.md, measured and not shipped, see docs/research-log.md; make corpus tells how to get
# them), the emotion4 scheme, CREMA-D actors 1001 and 1002 held out of everything (they are the demo),
# leave-one-corpus-out figures, then the final model. What the model may be used for follows from the
# corpora's licences (trainer/corpora/licences.py; the manifest's training.use). New fits also remove each
# frame's DC offset (the shipped model predates it), so a retrained model is close to the shipped one, not equal.
ALL_CORPORA := ravdess crema-d tess savee turev-db ased nemo emovo emospeech coraa-ser
CORPORA := ravdess crema-d tess savee turev-db
ifeq ($(CORPORA),all)
override CORPORA := $(ALL_CORPORA)
endif
# LOCO fold k holds out the k-th corpus in name order: the folds of SCREEN_CORPORA among CORPORA.
SCREEN_CORPORA := savee turev-db
SCREEN_FOLDS := $(shell i=0; for c in $(sort $(CORPORA)); do case " $(SCREEN_CORPORA) " in (*" $$c "*) printf '%s,' $$i;; esac; \
	i=$$((i+1)); done | sed 's/,$$//')
model: $(VENV)/.installed-all ## train the shipped recipe on its five corpora in data/ (CORPORA=all: the ten; see: make corpus); about an hour on 2 cores
	$(VENV)/bin/ser-train fit $(foreach c,$(CORPORA),--corpus $(c)=data/$(c)) --labels emotion4 \
		--hold-out-speakers crema-d:1001,crema-d:1002 --out models/emotion4-conv1d

screen: $(VENV)/.installed-all ## screen a recipe in minutes: two held-out corpora (SAVEE, TurEV-DB), 10 epochs (ARGS='--adapt 0' to vary it)
	$(VENV)/bin/ser-train fit $(foreach c,$(CORPORA),--corpus $(c)=data/$(c)) --labels emotion4 \
		--hold-out-speakers crema-d:1001,crema-d:1002 --folds $(SCREEN_FOLDS) --epochs 10 --final-epochs 1 \
		--no-baseline --allow-chance --out runs/screen/model $(ARGS)

corpus: ## how to get the full corpora into data/ (git-ignored)
	@echo "The full corpora are not in this repository (their licences do not allow it)."
	@echo "Small real subsets for tests are in ../shared/data (see ../shared/data/README.md)."
	@echo "For training, bring in the public Git snapshots and extract them, checking every md5:"
	@echo "  RAVDESS speech (1440 files, 24 actors): snapshot of github:Rahul5430/Speech-Emotion-Recognition-System"
	@echo "    ../shared/tools/corpus-from-mirror ravdess GIT_DIR data/ravdess"
	@echo "  TESS (2798 of 2800 files): snapshot of github:NidupDorji/SpeechEmotionRecognitionSystemUsingPython"
	@echo "    ../shared/tools/corpus-from-mirror tess GIT_DIR data/tess"
	@echo "  CREMA-D (7442 files, 91 actors): snapshot of github:kderrylo/Speech-Emotion-Classification-with-CNN-LSTM-CLSTM"
	@echo "    ../shared/tools/corpus-from-mirror crema-d GIT_DIR data/crema-d"
	@echo "  SAVEE (480 files, 4 speakers): snapshot of github:Set0ri/Emotional-Speech-Recognition"
	@echo "    ../shared/tools/corpus-from-mirror savee GIT_DIR data/savee"
	@echo "  TurEV-DB (1735 files, 6 speakers, Turkish): snapshot of github:Xeonen/TurEV-DB"
	@echo "    ../shared/tools/corpus-from-mirror turev-db GIT_DIR data/turev-db"
	@echo "  ASED (2474 files, 65 speakers, Amharic): snapshot of github:wgwangang/ASED_V1"
	@echo "    ../shared/tools/corpus-from-mirror ased GIT_DIR data/ased"
	@echo "  nEMO (4481 files, 9 actors, Polish): snapshot of github:amu-cai/nEMO"
	@echo "    ../shared/tools/corpus-from-mirror nemo GIT_DIR data/nemo"
	@echo "  EMOVO (588 files, 6 actors, Italian, 48 kHz stereo): snapshot of github:fp1acm8/SER"
	@echo "    ../shared/tools/corpus-from-mirror emovo GIT_DIR data/emovo"
	@echo "  EmoSpeech (7741 files, 6533 of them labelled speech; about 108 users, commands on phones): snapshot of github:RakshakTeam/emospeech-dataset-v1"
	@echo "    ../shared/tools/corpus-from-mirror emospeech GIT_DIR data/emospeech"
	@echo "  CORAA-SER (625 files, 84 conversations, natural Brazilian Portuguese): snapshot of github:mendesLet/speech-emotion-rec-ptbr"
	@echo "    ../shared/tools/corpus-from-mirror coraa-ser GIT_DIR data/coraa-ser"
	@echo "GIT_DIR is the git directory of the snapshot (a bare clone of that repository works)."
	@echo "The tool pins the commit and folder, writes the original files and checks every md5 (exit 1 on any difference)."
	@echo "Publishers and licences: docs/training.md, and trainer/corpora/licences.py (what a model trained on each may be used for)."
	@echo "Then make model (all ten), or e.g. ser-train fit --corpus ravdess=data/ravdess --corpus crema-d=data/crema-d ..."

# Our own synthetic speech (never corpus audio): four sentences in different deliveries with
# 1.5 s pauses, 16 kHz mono 16-bit. espeak-ng writes 22.05 kHz; sox trims each sentence's own
# leading/trailing silence, lowers the gain 3 dB (the loud sentence clips when resampled),
# resamples without dither (-D, so the output is reproducible) and pads the pauses.
SAMPLE_TMP := build/sample
sample: ## regenerate edge/samples/speech-sample.wav with espeak-ng and sox
	@mkdir -p $(SAMPLE_TMP) $(dir $(SAMPLE))
	espeak-ng -v en-us -s 150 -p 45 -a 120 -w $(SAMPLE_TMP)/1.wav "Good morning. It is a lovely day today."
	espeak-ng -v en-us -s 190 -p 70 -a 200 -w $(SAMPLE_TMP)/2.wav "Wow, we won! This is amazing!"
	espeak-ng -v en-us -s 110 -p 20 -a 70 -w $(SAMPLE_TMP)/3.wav "I miss them so much."
	espeak-ng -v en-us -s 175 -p 35 -a 180 -w $(SAMPLE_TMP)/4.wav "Stop that right now!"
	for i in 1 2 3 4; do \
		sox -D $(SAMPLE_TMP)/$$i.wav -r 16000 -c 1 -b 16 $(SAMPLE_TMP)/$$i-16k.wav \
			gain -3 silence 1 0.02 -45d reverse silence 1 0.02 -45d reverse pad 0 1.5 || exit 1; \
	done
	sox -D $(SAMPLE_TMP)/1-16k.wav $(SAMPLE_TMP)/2-16k.wav $(SAMPLE_TMP)/3-16k.wav $(SAMPLE_TMP)/4-16k.wav \
		-r 16000 -c 1 -b 16 $(SAMPLE) pad 0.5 0
	@soxi $(SAMPLE) | grep -E 'Sample Rate|Channels|Precision|Duration|File Size'
