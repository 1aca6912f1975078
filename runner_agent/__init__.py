"""What runs on a GPU runner: ms-swift training and EvalScope evaluation as subprocesses, with live progress."""
