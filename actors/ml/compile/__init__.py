"""The model compiler: ONNX models into DLR (TVM graph-executor) model folders.

``compile_onnx(model.onnx, folder, target="x86_64")`` writes ``model.so`` (one
packed function per fused operator, C kernels from ``kernels/`` compiled by
gcc, the instruction set chosen at run time on x86_64), ``model.json`` (the
graph), ``model.params`` (the weights) and ``model.meta`` (input and output
names), which libdlr and TVM's graph executor load. ``compile_model_folder``
does it for every network of a built model folder and writes its manifest.
"""

from ._compiler import (
    TARGETS,
    Compiled,
    Target,
    build_dlr_model,
    compile_model_folder,
    compile_onnx,
    dlr_folder_name,
    find_compiler,
)
from ._errors import CompileError, ToolchainMissing

__all__ = ["TARGETS", "CompileError", "Compiled", "Target", "ToolchainMissing",
           "build_dlr_model", "compile_model_folder", "compile_onnx", "dlr_folder_name",
           "find_compiler"]
