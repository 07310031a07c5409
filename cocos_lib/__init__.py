"""cocos_lib: a small, tested library for CoCoS (self-correcting code generation with online RL).

Importing the package imports nothing heavy: the executor's sandbox worker relies on that
(it must never import torch). Import the submodules you need, e.g. `from cocos_lib import rewards`.
"""

__version__ = "0.1.0"
