// _C.DeviceArray: a numpy array copied to the GPU, freed with the Python object.
// It exposes __cuda_array_interface__ so torch/cupy/numba can view it, and lets
// callers keep an item table on the device across fused_topk calls.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"

namespace py = pybind11;

namespace {

class DeviceArray {
 public:
  explicit DeviceArray(const py::array& host) {
    py::array arr = py::array::ensure(host, py::array::c_style);
    if (!arr) throw std::invalid_argument("DeviceArray: expected an array");
    typestr_ = py::str(arr.dtype().attr("str"));
    for (py::ssize_t i = 0; i < arr.ndim(); ++i) shape_.push_back(arr.shape(i));
    dtype_ = arr.dtype();
    buffer_ = std::make_unique<genre::DeviceBuffer>(size_t(arr.nbytes()));
    if (arr.nbytes()) {
      GENRE_CUDA_CHECK(cudaMemcpy(buffer_->get(), arr.data(), size_t(arr.nbytes()), cudaMemcpyHostToDevice));
    }
  }

  uintptr_t ptr() const { return reinterpret_cast<uintptr_t>(buffer_->get()); }
  // Built by hand: casting the std::vector needs pybind11/stl.h, and without it
  // the cast fails at run time (seen on the first GPU run: "Unregistered type").
  py::tuple shape() const {
    py::tuple t(shape_.size());
    for (size_t i = 0; i < shape_.size(); ++i) t[i] = py::int_(shape_[i]);
    return t;
  }

  py::dict interface() const {
    py::dict d;
    d["shape"] = shape();
    d["typestr"] = typestr_;
    d["data"] = py::make_tuple(ptr(), false);
    d["version"] = 3;
    d["strides"] = py::none();
    return d;
  }

  py::array to_numpy() const {
    py::array out(dtype_, shape_);
    if (buffer_->bytes()) {
      GENRE_CUDA_CHECK(cudaMemcpy(out.mutable_data(), buffer_->get(), buffer_->bytes(), cudaMemcpyDeviceToHost));
    }
    return out;
  }

 private:
  std::unique_ptr<genre::DeviceBuffer> buffer_;
  std::vector<py::ssize_t> shape_;
  std::string typestr_;
  py::dtype dtype_;
};

}  // namespace

void register_device_array(py::module_& m) {
  py::class_<DeviceArray>(m, "DeviceArray")
      .def(py::init<const py::array&>(), py::arg("host"))
      .def_property_readonly("ptr", &DeviceArray::ptr)
      .def_property_readonly("shape", &DeviceArray::shape)
      .def_property_readonly("__cuda_array_interface__", &DeviceArray::interface)
      .def("to_numpy", &DeviceArray::to_numpy);
}
