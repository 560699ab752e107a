"""Input/output: video decode/encode (`video`), later DICOM and dataset adapters."""
