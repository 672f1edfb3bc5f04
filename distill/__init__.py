"""pocketrec.distill: the training side.

Datasets and the evaluation protocol, the SASRec baseline, semantic IDs, teachers, students and
distillation. Each pipeline stage is one module with one entry function that takes a typed
config and returns the directory it wrote. Importing this package imports no heavy dependency;
modules that need torch import it themselves.
"""
