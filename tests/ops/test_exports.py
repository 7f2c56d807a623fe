"""visolo_fast.ops: each op's public function under the op's name, however its module was imported."""

import inspect
import subprocess
import sys
import textwrap

import visolo_fast.ops as ops


def test_every_name_is_the_function_of_its_module():
    for name in ops.__all__:
        fn = getattr(ops, name)
        assert inspect.isfunction(fn), name
        assert fn is getattr(sys.modules[f"visolo_fast.ops.{name}"], name), name


def test_memory_read_stays_the_function_after_imports_of_its_module():
    # Fresh interpreters: whichever comes first, `import visolo_fast` or an import of the
    # module visolo_fast.ops.memory_read, the package attribute is the function.
    check = textwrap.dedent("""
        import importlib, inspect
        import visolo_fast.ops.memory_read
        from visolo_fast.ops.memory_read import memory_read
        importlib.import_module("visolo_fast.ops.memory_read")
        import visolo_fast
        f = visolo_fast.ops.memory_read
        assert f is memory_read and not inspect.ismodule(f), f
        assert list(inspect.signature(f).parameters) == ["query", "keys", "values", "residual", "backend", "lengths"]
    """)
    for first in ("import visolo_fast", "import visolo_fast.ops.memory_read", "from visolo_fast.ops import memory_read"):
        done = subprocess.run([sys.executable, "-c", f"{first}\n{check}"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"after `{first}`:\n{done.stderr[-2000:]}"
