"""Speech and text feature extraction into the HDF5 feature cache."""
