"""genre_serve/_C.pyi describes the compiled module that is installed: the
same names, and for every function the same parameters in the same order
(the CUDA entry points take keywords only; they cannot run without a GPU,
so this is where their signature is checked)."""

import ast
import re
from importlib import resources

from genre_serve import _C
from genre_serve.kernels import BUILT_WITH_CUDA

CUDA_ONLY = {"fused_topk_cuda", "cross_features_cuda", "DeviceArray"}


def stub_definitions() -> dict[str, ast.AST]:
    tree = ast.parse((resources.files("genre_serve") / "_C.pyi").read_text())
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def test_the_package_ships_its_stub_and_the_typed_marker():
    assert (resources.files("genre_serve") / "_C.pyi").is_file()
    assert (resources.files("genre_serve") / "py.typed").is_file()


def test_the_stub_names_what_the_extension_exports():
    exported = {n for n in dir(_C) if not n.startswith("_")}
    stubbed = set(stub_definitions())
    assert exported <= stubbed, exported - stubbed
    assert stubbed - exported <= (set() if BUILT_WITH_CUDA else CUDA_ONLY)


def test_every_function_has_the_stub_parameters_in_order():
    for name, node in stub_definitions().items():
        if not isinstance(node, ast.FunctionDef) or not hasattr(_C, name):
            continue
        signature = _C.__dict__[name].__doc__.splitlines()[0]  # pybind11: "name(a: T, *, b: T) -> R"
        inner = signature[len(name) + 1 : signature.rindex(") ->")]
        compiled = re.findall(r"(?:^|, )(\*|\w+)(?=: |, |$)", inner)
        args = node.args
        stub = [a.arg for a in args.posonlyargs + args.args] + (["*"] if args.kwonlyargs else []) + [
            a.arg for a in args.kwonlyargs]
        assert compiled == stub, (name, compiled, stub)
