"""Entry point of a sandbox worker: `python -I -S launch.py CONFIG_JSON`.

-I drops the script's folder from sys.path, so this puts the folder above it (cocos_lib/) there
to import the `sandbox` package (stdlib only), then takes it off again: nothing else of the
project is importable afterwards, and cocos_lib/__init__.py never runs.
"""
import importlib, os, sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
worker = importlib.import_module("sandbox.worker")
sys.path.remove(HERE)
worker.main()
