"""Shared fixtures of the detection tests: a tiny generated VOC-layout dataset and a small trunk."""
