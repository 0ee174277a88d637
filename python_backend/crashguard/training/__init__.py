"""Safe MONAI training: config, data, model, the guarded loop, checkpoints, inference.

Importing this package is light; torch and MONAI are imported by the modules that need them (data, model,
loop, checkpoint, inference), never by config.py, sample_data.py or check.py.
"""
