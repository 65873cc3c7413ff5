"""faultcast training: datasets, recurrent models, calibration, ONNX export and evaluation."""
