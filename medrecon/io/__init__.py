"""Readers and writers of medical image formats, one module per format."""
