// genre_serve._C: the private compiled module. The Python wrappers in
// genre_serve.kernels validate every argument and allocate outputs; the
// functions here re-check what they rely on (sizes, index ranges) and turn
// bad input into std::invalid_argument (-> ValueError), never a crash.
#include <pybind11/numpy.h>
#include <omp.h>
#include <pybind11/pybind11.h>

#include <algorithm>

#include <stdexcept>
#include <string>

#include "common/kernels.h"
#ifdef GENRE_SERVE_WITH_CUDA
#include "cuda/gemm.h"
#endif

namespace py = pybind11;
using genre::CrossFeaturesArgs;
using genre::FusedTopKArgs;

namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style>;

// Requires a C-contiguous array of exactly dtype T and the given rank; no copy.
template <typename T>
CArray<T> expect(const py::handle& obj, const char* name, int ndim) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + ": expected a numpy array");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!arr.dtype().is(py::dtype::of<T>())) {
    throw py::type_error(std::string(name) + ": wrong dtype " + std::string(py::str(arr.dtype())));
  }
  if (arr.ndim() != ndim) throw std::invalid_argument(std::string(name) + ": expected rank " + std::to_string(ndim));
  if (!(arr.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + ": not C-contiguous");
  return py::reinterpret_borrow<CArray<T>>(arr);
}

void check_dim(const char* name, int64_t got, int64_t want, const char* what) {
  if (got != want) {
    throw std::invalid_argument(std::string(name) + ": " + what + " is " + std::to_string(got) +
                                ", expected " + std::to_string(want));
  }
}

// The exclusion CSR (None or int64 indptr [B + 1], indices), checked and set
// as host pointers: indices in range, every segment sorted (the kernels
// binary-search it).
void set_exclusion(FusedTopKArgs& a, const py::handle& indptr, const py::handle& indices) {
  if (indptr.is_none()) return;
  auto ip = expect<int64_t>(indptr, "exclude_indptr", 1);
  auto ix = expect<int64_t>(indices, "exclude_indices", 1);
  check_dim("exclude_indptr", ip.shape(0), a.batch + 1, "length");
  const int64_t* p = ip.data();
  if (p[0] != 0 || p[a.batch] != ix.shape(0)) throw std::invalid_argument("exclude_indptr: does not span exclude_indices");
  for (int64_t b = 0; b < a.batch; ++b) {
    if (p[b + 1] < p[b]) throw std::invalid_argument("exclude_indptr: not non-decreasing");
  }
  const int64_t* x = ix.data();
  for (int64_t i = 0; i < ix.shape(0); ++i) {
    if (x[i] < 0 || x[i] >= a.num_items) throw std::invalid_argument("exclude: index " + std::to_string(x[i]) + " out of range");
    // Segments must be sorted for the binary search; the wrapper sorts them.
    if (i > 0 && x[i] < x[i - 1]) {
      const int64_t* seg = std::upper_bound(p, p + a.batch + 1, i - 1);
      if (*seg != i) throw std::invalid_argument("exclude_indices: a segment is not sorted");
    }
  }
  a.exclude_indptr = p;
  a.exclude_indices = x;
}

// The per-user fusion weights, float32 [B] each (a.batch set), as host pointers.
void set_weights(FusedTopKArgs& a, const py::handle& w_cf, const py::handle& w_ct) {
  auto wcf = expect<float>(w_cf, "w_cf", 1);
  auto wct = expect<float>(w_ct, "w_ct", 1);
  check_dim("w_cf", wcf.shape(0), a.batch, "length");
  check_dim("w_ct", wct.shape(0), a.batch, "length");
  a.w_cf = wcf.data();
  a.w_ct = wct.data();
}

// Host-side shared checks of fused_topk; returns args with host pointers.
FusedTopKArgs fused_args(const py::handle& user_cf, const py::handle& item_cf, const py::handle& user_ct,
                         const py::handle& item_ct, const py::handle& w_cf, const py::handle& w_ct,
                         int64_t k, const py::handle& indptr, const py::handle& indices) {
  FusedTopKArgs a;
  auto ucf = expect<float>(user_cf, "user_cf", 2);
  a.batch = ucf.shape(0);
  a.dc = ucf.shape(1);
  a.user_cf = ucf.data();
  set_weights(a, w_cf, w_ct);
  if (!item_cf.is_none()) {
    auto icf = expect<float>(item_cf, "item_cf", 2);
    check_dim("item_cf", icf.shape(1), a.dc, "dimension");
    a.item_cf = icf.data();
    a.num_items = icf.shape(0);
  }
  if (!item_ct.is_none()) {
    auto uct = expect<float>(user_ct, "user_ct", 2);
    auto ict = expect<float>(item_ct, "item_ct", 2);
    check_dim("user_ct", uct.shape(0), a.batch, "batch");
    check_dim("item_ct", ict.shape(1), uct.shape(1), "dimension");
    if (a.item_cf) check_dim("item_ct", ict.shape(0), a.num_items, "number of items");
    a.user_ct = uct.data();
    a.item_ct = ict.data();
    a.dt = uct.shape(1);
    a.num_items = ict.shape(0);
  }
  if (!a.item_cf && !a.item_ct) throw std::invalid_argument("fused_topk: no item table given");
  if (k < 0) throw std::invalid_argument("k: must be positive");
  a.k = k;
  set_exclusion(a, indptr, indices);
  return a;
}

py::tuple fused_topk_cpu(py::handle user_cf, py::handle item_cf, py::handle user_ct, py::handle item_ct,
                         py::handle w_cf, py::handle w_ct, int64_t k, py::handle indptr, py::handle indices,
                         int num_threads) {
  FusedTopKArgs a = fused_args(user_cf, item_cf, user_ct, item_ct, w_cf, w_ct, k, indptr, indices);
  CArray<int64_t> out_idx({a.batch, k});
  CArray<float> out_score({a.batch, k});
  a.out_indices = out_idx.mutable_data();
  a.out_scores = out_score.mutable_data();
  a.num_threads = num_threads;
  {
    py::gil_scoped_release release;
    genre::fused_topk_cpu(a);
  }
  return py::make_tuple(out_idx, out_score);
}

// Host scores float32 [batch, num_candidates], checked.
const float* host_scores(const py::handle& scores, int64_t batch, int64_t num_candidates) {
  auto s = expect<float>(scores, "scores", 2);
  check_dim("scores", s.shape(0), batch, "batch");
  check_dim("scores", s.shape(1), num_candidates, "number of candidates");
  return s.data();
}

// The output buffer [batch, num_candidates, 4 dim (+1 with scores)], checked; sets a.out.
void set_out(CrossFeaturesArgs& a, const py::handle& out) {
  auto o = expect<float>(out, "out", 3);
  check_dim("out", o.shape(0), a.batch, "batch");
  check_dim("out", o.shape(1), a.num_candidates, "number of candidates");
  check_dim("out", o.shape(2), 4 * a.dim + (a.scores ? 1 : 0), "feature size");
  a.out = o.mutable_data();
}

CrossFeaturesArgs cross_args(py::handle user, py::handle items, py::handle candidates, py::handle scores,
                             py::handle out) {
  CrossFeaturesArgs a;
  auto u = expect<float>(user, "user", 2);
  auto it = expect<float>(items, "items", 2);
  auto c = expect<int64_t>(candidates, "candidates", 2);
  a.batch = u.shape(0);
  a.dim = u.shape(1);
  a.num_items = it.shape(0);
  a.num_candidates = c.shape(1);
  check_dim("items", it.shape(1), a.dim, "dimension");
  check_dim("candidates", c.shape(0), a.batch, "batch");
  if (!scores.is_none()) a.scores = host_scores(scores, a.batch, a.num_candidates);
  set_out(a, out);
  a.user = u.data();
  a.items = it.data();
  a.candidates = c.data();
  return a;
}

void cross_features_cpu(py::handle user, py::handle items, py::handle candidates, py::handle scores,
                        py::handle out, int num_threads) {
  CrossFeaturesArgs a = cross_args(user, items, candidates, scores, out);
  a.num_threads = num_threads;
  py::gil_scoped_release release;
  genre::cross_features_cpu(a);
}

#ifdef GENRE_SERVE_WITH_CUDA
// CUDA entry points take the vectors and tables as device pointers (ints,
// from __cuda_array_interface__) plus the shapes the wrapper validated, and
// the small per-call inputs as host numpy arrays (checked here, staged to the
// device by the kernels); outputs come back as host numpy arrays.
py::tuple fused_topk_cuda(uintptr_t user_cf, uintptr_t item_cf, int64_t dc, uintptr_t user_ct,
                          uintptr_t item_ct, int64_t dt, py::handle w_cf, py::handle w_ct, int64_t batch,
                          int64_t num_items, int64_t k, py::handle indptr, py::handle indices) {
  FusedTopKArgs a;
  a.user_cf = reinterpret_cast<const float*>(user_cf);
  a.item_cf = reinterpret_cast<const float*>(item_cf);
  a.dc = dc;
  a.user_ct = reinterpret_cast<const float*>(user_ct);
  a.item_ct = reinterpret_cast<const float*>(item_ct);
  a.dt = dt;
  a.batch = batch;
  a.num_items = num_items;
  set_weights(a, w_cf, w_ct);
  if (k < 0) throw std::invalid_argument("k: must be positive");
  a.k = k;
  set_exclusion(a, indptr, indices);
  CArray<int64_t> out_idx({batch, k});
  CArray<float> out_score({batch, k});
  a.out_indices = out_idx.mutable_data();
  a.out_scores = out_score.mutable_data();
  {
    py::gil_scoped_release release;
    genre::fused_topk_cuda(a);
  }
  return py::make_tuple(out_idx, out_score);
}

// scores: None, a device pointer (int), or a host float32 [batch, num_candidates] array.
void cross_features_cuda(uintptr_t user, uintptr_t items, py::handle candidates, py::handle scores,
                         int64_t batch, int64_t num_items, int64_t dim, py::handle out) {
  auto c = expect<int64_t>(candidates, "candidates", 2);
  CrossFeaturesArgs a;
  a.user = reinterpret_cast<const float*>(user);
  a.items = reinterpret_cast<const float*>(items);
  a.batch = batch;
  a.num_items = num_items;
  a.dim = dim;
  a.num_candidates = c.shape(1);
  check_dim("candidates", c.shape(0), batch, "batch");
  genre::check_candidates(c.data(), c.size(), num_items);
  a.candidates = c.data();
  if (py::isinstance<py::array>(scores)) {
    a.scores = host_scores(scores, batch, a.num_candidates);
    a.scores_on_host = true;
  } else if (!scores.is_none()) {
    a.scores = reinterpret_cast<const float*>(scores.cast<uintptr_t>());
  }
  set_out(a, out);
  py::gil_scoped_release release;
  genre::cross_features_cuda(a);
}
#endif

}  // namespace

void register_device_array(py::module_& m);

PYBIND11_MODULE(_C, m) {
  m.doc() = "genre_serve native kernels (private: use genre_serve.kernels)";
  m.def("fused_topk_cpu", &fused_topk_cpu, py::arg("user_cf"), py::arg("item_cf"), py::arg("user_ct"),
        py::arg("item_ct"), py::arg("w_cf"), py::arg("w_ct"), py::arg("k"), py::arg("exclude_indptr"),
        py::arg("exclude_indices"), py::arg("num_threads") = 0);
  m.def("cross_features_cpu", &cross_features_cpu, py::arg("user"), py::arg("items"), py::arg("candidates"),
        py::arg("scores"), py::arg("out"), py::arg("num_threads") = 0);
  m.def("num_threads", []() { return omp_get_max_threads(); });
#ifdef GENRE_SERVE_WITH_CUDA
  m.def("has_cuda", []() { return true; }, "Whether the CUDA kernels were compiled in.");
  m.def("cuda_device_count", []() { return genre::cuda_device_count(); });
  m.def("cuda_gemm_available", []() { return genre::Gemm::for_current_device() != nullptr; },
        "Whether fused_topk can score batches with cuBLAS (loaded at run time) on the current device.");
  // Device pointers are integers (from __cuda_array_interface__); every
  // argument is named, and genre_serve.kernels.cuda passes them by keyword.
  m.def("fused_topk_cuda", &fused_topk_cuda, py::kw_only(), py::arg("user_cf"), py::arg("item_cf"), py::arg("dim_cf"),
        py::arg("user_ct"), py::arg("item_ct"), py::arg("dim_ct"), py::arg("w_cf"), py::arg("w_ct"), py::arg("batch"),
        py::arg("num_items"), py::arg("k"), py::arg("exclude_indptr"), py::arg("exclude_indices"));
  m.def("cross_features_cuda", &cross_features_cuda, py::kw_only(), py::arg("user"), py::arg("items"),
        py::arg("candidates"), py::arg("scores"), py::arg("batch"), py::arg("num_items"), py::arg("dim"),
        py::arg("out"));
  register_device_array(m);
#else
  m.def("has_cuda", []() { return false; }, "Whether the CUDA kernels were compiled in.");
  m.def("cuda_device_count", []() { return 0; });
  m.def("cuda_gemm_available", []() { return false; },
        "Whether fused_topk can score batches with cuBLAS (loaded at run time) on the current device.");
#endif
}
