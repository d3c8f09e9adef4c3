# Quick start: `make demo` (the toy-world main job) and `make test` (the test suite).
# Both create .venv when missing and install ovdet in editable mode with its test extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ovdet-installed
DATASETS ?= datasets
TOYWORLD := $(DATASETS)/toyworld

.PHONY: demo demo-pseudo demo-panoptic demo-prompts demo-contrastive test toyworld clean-demo

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(TOYWORLD)/annotations/instances_train.json: | $(STAMP)
	$(PY) -m ovdet.data.toyworld --out $(TOYWORLD) --split train --num-images 2000

$(TOYWORLD)/annotations/instances_val.json: | $(STAMP)
	$(PY) -m ovdet.data.toyworld --out $(TOYWORLD) --split val --num-images 500

toyworld: $(TOYWORLD)/annotations/instances_train.json $(TOYWORLD)/annotations/instances_val.json

DEMO_DIR ?= output/demo

# The main job: measure the toy CLIP, train on base boxes, evaluate with the CLIP region-score
# ensemble, without it, and with F-VLM's novel term. Re-running retrains from scratch.
demo: $(STAMP) toyworld
	$(PY) tools/evaluate_clip.py --clip toyworld --dataset-root $(TOYWORLD) --split val
	OVDET_DATASETS=$(DATASETS) $(PY) tools/train_net.py --config-file configs/toyworld/ovrcnn_base.yaml \
		OUTPUT_DIR $(DEMO_DIR)
	OVDET_DATASETS=$(DATASETS) $(PY) tools/train_net.py --config-file $(DEMO_DIR)/config.yaml --eval-only \
		MODEL.WEIGHTS $(DEMO_DIR)/model_final.pth MODEL.OPEN_VOCAB.USE_CLIP_ENSEMBLE False \
		OUTPUT_DIR $(DEMO_DIR)/no_ensemble
	OVDET_DATASETS=$(DATASETS) $(PY) tools/train_net.py --config-file $(DEMO_DIR)/config.yaml --eval-only \
		MODEL.WEIGHTS $(DEMO_DIR)/model_final.pth MODEL.OPEN_VOCAB.NOVEL_PRIOR head \
		MODEL.OPEN_VOCAB.BETA_NOVEL 0.65 MODEL.OPEN_VOCAB.NOVEL_BOXES regressed \
		OUTPUT_DIR $(DEMO_DIR)/fvlm_novel_term

# A second toy world (val only, drawn with seed 3): the check that a result is not one world's luck.
CHECK_WORLD := $(DATASETS)/toyworld_seed3

$(CHECK_WORLD)/annotations/instances_val.json: | $(STAMP)
	$(PY) -m ovdet.data.toyworld --out $(CHECK_WORLD) --split val --num-images 500 --seed 3

PSEUDO_DIR ?= output/demo_pseudo
CAPTIONS := $(TOYWORLD)/annotations/captions_train_ovdet.json

# Training without box labels: pseudo-box quality of the three activation methods on val,
# pseudo boxes for train from captions (box-free), a detector trained on them alone (zero human
# boxes), the PB-OVD recipe (pseudo-box pretraining, then base boxes), then fine-tunings of the
# same pretrained detector that keep what the pseudo boxes taught (ignore, soft positives,
# distillation, mixed data, and pbovd_keep.yaml, the recommended one), with the table of all on
# val and on a world drawn with seed 3. About 70 minutes.
demo-pseudo: $(STAMP) toyworld $(CHECK_WORLD)/annotations/instances_val.json
	$(PY) datasets/prepare_coco_captions.py --input $(TOYWORLD)/annotations/captions_train.json \
		--output $(CAPTIONS)
	$(PY) tools/benchmark.py pseudo-boxes --dataset-root $(TOYWORLD) --split val
	$(PY) tools/generate_pseudo_boxes.py --captions $(CAPTIONS) --image-root $(TOYWORLD)/train \
		--vocabulary $(TOYWORLD)/annotations/instances_train.json \
		--background sky,grass,water,sand,wall --out $(TOYWORLD)/annotations/pseudo_train.json \
		--overwrite
	OVDET_DATASETS=$(DATASETS) $(PY) tools/train_net.py \
		--config-file configs/toyworld/ovrcnn_pseudo.yaml OUTPUT_DIR $(PSEUDO_DIR)/zero_boxes
	OVDET_DATASETS=$(DATASETS) $(PY) tools/train_net.py \
		--config-file configs/toyworld/pbovd_pretrain.yaml OUTPUT_DIR $(PSEUDO_DIR)/pbovd_pretrain
	OVDET_DATASETS=$(DATASETS) $(PY) tools/train_net.py \
		--config-file configs/toyworld/pbovd_finetune.yaml OUTPUT_DIR $(PSEUDO_DIR)/pbovd_finetune \
		MODEL.WEIGHTS $(PSEUDO_DIR)/pbovd_pretrain/model_final.pth
	OVDET_DATASETS=$(DATASETS) $(PY) tools/train_net.py \
		--config-file $(PSEUDO_DIR)/pbovd_finetune/config.yaml --eval-only \
		MODEL.WEIGHTS $(PSEUDO_DIR)/pbovd_finetune/model_final.pth \
		MODEL.OPEN_VOCAB.NOVEL_PRIOR objectness OUTPUT_DIR $(PSEUDO_DIR)/pbovd_finetune/objectness_prior
	OVDET_DATASETS=$(DATASETS) $(PY) tools/benchmark.py pseudo-finetune --output-dir $(PSEUDO_DIR) \
		--check-world $(CHECK_WORLD)

PANOPTIC_DIR ?= output/demo_panoptic

# Open-vocabulary panoptic segmentation: the panoptic branch (query masks + RMA mask tokens) trained
# on base things and stuff (novel things are void), PQ on val with every thing and stuff class,
# then RMA against masked crops on the same proposals (PQ and seconds). About 9 minutes.
demo-panoptic: $(STAMP) toyworld
	OVDET_DATASETS=$(DATASETS) $(PY) tools/train_net.py \
		--config-file configs/toyworld/panoptic_maskclip.yaml OUTPUT_DIR $(PANOPTIC_DIR)
	OVDET_DATASETS=$(DATASETS) $(PY) tools/benchmark.py panoptic \
		--config-file configs/toyworld/panoptic_maskclip.yaml --size 64 \
		--dataset toyworld_val_panoptic MODEL.WEIGHTS $(PANOPTIC_DIR)/model_final.pth

PROMPTS_DIR ?= output/demo_prompts
IMAGE_LABELS := $(TOYWORLD)/annotations/image_labels_train.json

# PromptDet on the shared trunk: region prompts learned against RMA region embeddings of base boxes
# (accuracy report vs templates), the base-only detector with them (1,500 iterations, as `make
# demo`), its top-scoring box for every caption noun of the train images (novel names included;
# precision against the toy ground truth printed), then self-training from its iteration-750
# checkpoint on half base boxes, half caption-labelled images (750 more). About 19 minutes.
demo-prompts: $(STAMP) toyworld
	OVDET_DATASETS=$(DATASETS) $(PY) tools/learn_region_prompts.py \
		--config-file configs/toyworld/promptdet_prompts.yaml \
		--out $(PROMPTS_DIR)/prompts.pt --overwrite
	OVDET_DATASETS=$(DATASETS) $(PY) tools/train_net.py --config-file configs/toyworld/promptdet_base.yaml \
		MODEL.OPEN_VOCAB.PROMPTS $(PROMPTS_DIR)/prompts.pt OUTPUT_DIR $(PROMPTS_DIR)/base
	$(PY) tools/self_train_labels.py --config-file $(PROMPTS_DIR)/base/config.yaml \
		--weights $(PROMPTS_DIR)/base/model_final.pth \
		--captions $(TOYWORLD)/annotations/captions_train.json --image-root $(TOYWORLD)/train \
		--vocabulary $(TOYWORLD)/annotations/instances_train.json --out $(IMAGE_LABELS) --overwrite
	$(PY) -m ovdet.evaluation.pseudo_boxes $(IMAGE_LABELS) $(TOYWORLD)/annotations/instances_train.json
	OVDET_DATASETS=$(DATASETS) $(PY) tools/train_net.py \
		--config-file configs/toyworld/promptdet_self_training.yaml \
		MODEL.OPEN_VOCAB.PROMPTS $(PROMPTS_DIR)/prompts.pt \
		MODEL.WEIGHTS $(PROMPTS_DIR)/base/model_0000749.pth OUTPUT_DIR $(PROMPTS_DIR)/self_training

CONTRASTIVE_DIR ?= output/demo_contrastive
# ContrastZSD: the base-only detector of `make demo` trained four times (no contrastive loss,
# +RCCL, +RRCL, both), each evaluated by the zero-shot protocol (which gives the open-vocabulary
# AP50 too) on val and on a world drawn with seed 3, with the config's scoring and with the
# head's novel term; prints the ablation table. About 75 minutes.
demo-contrastive: $(STAMP) toyworld $(CHECK_WORLD)/annotations/instances_val.json
	OVDET_DATASETS=$(DATASETS) $(PY) tools/benchmark.py contrastive \
		--config-file configs/toyworld/contrastzsd.yaml --output-dir $(CONTRASTIVE_DIR) \
		--check-world $(CHECK_WORLD)

test: $(STAMP)
	$(PY) -m pytest -q tests
