// The Python module visolo_fast._C: empty on purpose. Importing it loads this
// shared library, whose static initialisers register every op with the
// PyTorch dispatcher (TORCH_LIBRARY_FRAGMENT / TORCH_LIBRARY_IMPL in each op's
// own file); the ops are then called as torch.ops.visolo_fast.<op>.

#include <Python.h>

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
