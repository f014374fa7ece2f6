// The rasterizer's CPU kernels (XLA FFI), see `pnccface.render.native`.
//
// PnccfaceVisibleTriangles: z-buffered visibility for
// `pnccface.render.rasterizer.rasterize(..., method='native')`.
// It computes exactly what the XLA methods compute (see the rasterizer's
// module docstring for the coverage and tie rules): every triangle tests the
// pixel centres of its screen bounding box with the same float32 edge
// functions and the same packed int32 key, quantised depth << id_bits |
// triangle id, and each pixel keeps the minimum key. The float arithmetic
// below is written in the same order as `_triangle_setup` and
// `_candidate_keys`, and compiled with -ffp-contract=off, so the keys (and so
// the triangle ids) are bit-identical to method='scatter'.
//
// Inputs: vertices [B, V, 3] float32 (x, y in pixels, depth already in
// quantisation steps, as `_visible_triangles` maps it), triangles [T, 3]
// int32. Output: triangle ids [B, H, W] int32, -1 on background.
// Images are independent: they run in parallel on XLA's intra-op threads.
//
// PnccfaceBarycentrics: `rasterize`'s barycentrics and depth at the visible
// triangles.
//
// PnccfaceNormalSums, PnccfaceNormalSumsTranspose: the area-weighted sum
// of face normals at each vertex (`shading.vertex_normals`) and its
// transpose, the reverse-mode gradient.
//
// PnccfaceInterpolate: the forward value of `rasterizer.interpolate` (its
// gradient stays in JAX): barycentrics recomputed at each pixel centre from
// the visible triangle's screen vertices, as `_pixel_barycentrics` does, then
// the weighted sum of the three vertices' attributes.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int32_t kNoHit = std::numeric_limits<int32_t>::max();

// Twice the signed area of (a, b, p): `_edge` in rasterizer.py.
inline float Edge(float ax, float ay, float bx, float by, float px, float py) {
  return (bx - ax) * (py - ay) - (by - ay) * (px - ax);
}

// First and last pixel centre (k + 0.5) in [lo, hi], clipped to [0, size):
// `_pixel_boxes`' centre_range.
inline void CentreRange(float lo, float hi, int32_t size, int32_t* first,
                        int32_t* last) {
  if (!(lo <= hi)) {  // NaN: an empty range (XLA's edge tests fail there too)
    *first = 0;
    *last = -1;
    return;
  }
  const float limit = static_cast<float>(size) + 2.0f;
  // std::min/max in this order are jnp.clip's min(max(x, lo), hi).
  float f = std::ceil(std::min(std::max(lo, -2.0f), limit) - 0.5f);
  float l = std::floor(std::min(std::max(hi, -2.0f), limit) - 0.5f);
  *first = static_cast<int32_t>(std::max(f, 0.0f));
  *last = std::min(static_cast<int32_t>(l), size - 1);
}

// Vertex rows of triangle `id`, clamped as XLA's gather clamps.
inline void TriangleRows(const int32_t* triangles, int64_t id,
                         int64_t last_vertex, int64_t v[3]) {
  for (int k = 0; k < 3; ++k) {
    v[k] = std::min<int64_t>(std::max<int64_t>(triangles[3 * id + k], 0),
                             last_vertex);
  }
}

// Calls image(b) for every b in [0, batch): on the calling thread and, where
// XLA's intra-op pool has more threads, on them too (images are
// independent). The caller waits only for images that running tasks have
// claimed, never for a task to start -- a pool thread may be the caller
// itself or busy with another device's kernel -- so this cannot deadlock.
// Tasks that start late find no image left and return; `image` must
// capture by value.
template <typename F>
void ForEachImage(ffi::ThreadPool& pool, int64_t batch, F image) {
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), batch) - 1;
  if (helpers <= 0) {
    for (int64_t b = 0; b < batch; ++b) image(b);
    return;
  }
  struct State {
    std::atomic<int64_t> next{0};
    std::mutex mutex;
    std::condition_variable idle;
    int64_t busy = 0;
  };
  auto state = std::make_shared<State>();
  auto work = [state, batch, image]() {
    for (bool more = true; more;) {
      {
        std::lock_guard<std::mutex> lock(state->mutex);
        ++state->busy;
      }
      const int64_t b = state->next++;
      more = b < batch;
      if (more) image(b);
      std::lock_guard<std::mutex> lock(state->mutex);
      if (--state->busy == 0) state->idle.notify_all();
    }
  };
  for (int64_t h = 0; h < helpers; ++h) {
    auto task = work;  // Schedule takes ownership of a copy
    pool.Schedule(std::move(task));
  }
  work();
  std::unique_lock<std::mutex> lock(state->mutex);
  state->idle.wait(lock, [&] { return state->busy == 0; });
}

// One image: its triangles' minimum keys into `zbuffer` [H * W].
void VisibleTrianglesOfImage(const float* vertices, int64_t num_vertices,
                             const int32_t* triangles, int64_t num_triangles,
                             int32_t height, int32_t width, int id_bits,
                             int32_t* zbuffer) {
  const float max_level = std::ldexp(1.0f, 31 - id_bits) - 1.0f;
  const int32_t id_mask = (int32_t{1} << id_bits) - 1;
  std::fill(zbuffer, zbuffer + static_cast<int64_t>(height) * width, kNoHit);
  const int64_t last_vertex = num_vertices - 1;
  for (int64_t t = 0; t < num_triangles; ++t) {
    int64_t v[3];
    TriangleRows(triangles, t, last_vertex, v);
    const float ax = vertices[3 * v[0]], ay = vertices[3 * v[0] + 1];
    const float az = vertices[3 * v[0] + 2];
    const float bx = vertices[3 * v[1]], by = vertices[3 * v[1] + 1];
    const float bz = vertices[3 * v[1] + 2];
    const float cx = vertices[3 * v[2]], cy = vertices[3 * v[2] + 1];
    const float cz = vertices[3 * v[2] + 2];
    int32_t row0, row1, col0, col1;
    CentreRange(std::min(std::min(ax, bx), cx), std::max(std::max(ax, bx), cx),
                width, &col0, &col1);
    CentreRange(std::min(std::min(ay, by), cy), std::max(std::max(ay, by), cy),
                height, &row0, &row1);
    if (row1 < row0 || col1 < col0) continue;
    const float area = Edge(ax, ay, bx, by, cx, cy);
    if (area == 0.0f) continue;  // zero-area triangles cover nothing
    const float sign = area < 0.0f ? -1.0f : 1.0f;
    const float scale = sign * (1.0f / area);
    const float x0 = static_cast<float>(col0) + 0.5f;
    const float y0 = static_cast<float>(row0) + 0.5f;
    // `_triangle_setup`: edge k is opposite vertex k, w = base + ex*di - ey*dj.
    const float px[3] = {bx, cx, ax}, py[3] = {by, cy, ay};
    const float qx[3] = {cx, ax, bx}, qy[3] = {cy, ay, by};
    float ex[3], ey[3], base[3];
    for (int k = 0; k < 3; ++k) {
      ex[k] = sign * (qx[k] - px[k]);
      ey[k] = sign * (qy[k] - py[k]);
      base[k] = ex[k] * (y0 - py[k]) - ey[k] * (x0 - px[k]);
    }
    const int32_t id = static_cast<int32_t>(t) & id_mask;
    for (int32_t di = 0; di <= row1 - row0; ++di) {
      const float fdi = static_cast<float>(di);
      int32_t* row = zbuffer + static_cast<int64_t>(row0 + di) * width + col0;
      for (int32_t dj = 0; dj <= col1 - col0; ++dj) {
        const float fdj = static_cast<float>(dj);
        const float w0 = base[0] + ex[0] * fdi - ey[0] * fdj;
        const float w1 = base[1] + ex[1] * fdi - ey[1] * fdj;
        const float w2 = base[2] + ex[2] * fdi - ey[2] * fdj;
        if (!(w0 >= 0.0f && w1 >= 0.0f && w2 >= 0.0f)) continue;
        const float depth = (w0 * az + w1 * bz + w2 * cz) * scale;
        // jnp.clip(floor(depth), 0, max_level) converted as XLA converts
        // (NaN -> 0), without C++'s undefined float-to-int of a NaN.
        const float floored = std::floor(depth);
        const float level =
            floored >= 0.0f ? std::min(floored, max_level) : 0.0f;
        const int32_t key = (static_cast<int32_t>(level) << id_bits) | id;
        row[dj] = std::min(row[dj], key);
      }
    }
  }
  for (int64_t p = 0; p < static_cast<int64_t>(height) * width; ++p) {
    zbuffer[p] = zbuffer[p] == kNoHit ? -1 : (zbuffer[p] & id_mask);
  }
}

ffi::Error VisibleTrianglesImpl(ffi::ThreadPool pool,
                                ffi::Buffer<ffi::F32, 3> vertices,
                                ffi::Buffer<ffi::S32, 2> triangles,
                                ffi::ResultBuffer<ffi::S32, 3> ids) {
  const auto vdims = vertices.dimensions();
  const auto tdims = triangles.dimensions();
  const auto odims = ids->dimensions();
  if (vdims[2] != 3 || tdims[1] != 3 || odims[0] != vdims[0]) {
    return ffi::Error::InvalidArgument(
        "pnccface_visible_triangles: expected vertices [B, V, 3], triangles "
        "[T, 3] and ids [B, H, W]");
  }
  const int64_t batch = vdims[0], num_vertices = vdims[1];
  const int64_t num_triangles = tdims[0];
  const int32_t height = static_cast<int32_t>(odims[1]);
  const int32_t width = static_cast<int32_t>(odims[2]);
  int id_bits = 1;
  while ((int64_t{1} << id_bits) <= num_triangles) ++id_bits;  // bit_length
  if (id_bits > 24) {
    return ffi::Error::InvalidArgument(
        "pnccface_visible_triangles: too many triangles for the int32 key");
  }
  const float* vertex_data = vertices.typed_data();
  const int32_t* triangle_data = triangles.typed_data();
  int32_t* id_data = ids->typed_data();
  const int64_t pixels = static_cast<int64_t>(height) * width;
  ForEachImage(pool, batch, [=](int64_t b) {
    VisibleTrianglesOfImage(vertex_data + b * num_vertices * 3, num_vertices,
                            triangle_data, num_triangles, height, width,
                            id_bits, id_data + b * pixels);
  });
  return ffi::Error::Success();
}


// Visits the H x W pixels of one image: visit(pixel, rows, barycentrics)
// where the pixel shows a triangle (vertex rows `rows`), empty(pixel)
// elsewhere. Barycentrics at the pixel centre use `_pixel_barycentrics`'
// float ops (w / area, an area of 0 read as 1).
template <typename Visit, typename Empty>
void ForEachPixel(const int32_t* ids, const float* vertices,
                  int64_t num_vertices, const int32_t* triangles,
                  int64_t num_triangles, int32_t height, int32_t width,
                  Visit visit, Empty empty) {
  const int64_t last_vertex = num_vertices - 1;
  int64_t pixel = 0;
  for (int32_t i = 0; i < height; ++i) {
    const float py = static_cast<float>(i) + 0.5f;
    for (int32_t j = 0; j < width; ++j, ++pixel) {
      const int32_t id = ids[pixel];
      if (id < 0 || id >= num_triangles) {
        empty(pixel);
        continue;
      }
      const float px = static_cast<float>(j) + 0.5f;
      int64_t v[3];
      TriangleRows(triangles, id, last_vertex, v);
      const float ax = vertices[3 * v[0]], ay = vertices[3 * v[0] + 1];
      const float bx = vertices[3 * v[1]], by = vertices[3 * v[1] + 1];
      const float cx = vertices[3 * v[2]], cy = vertices[3 * v[2] + 1];
      const float area = Edge(ax, ay, bx, by, cx, cy);
      const float safe_area = area == 0.0f ? 1.0f : area;
      const float w[3] = {Edge(bx, by, cx, cy, px, py) / safe_area,
                          Edge(cx, cy, ax, ay, px, py) / safe_area,
                          Edge(ax, ay, bx, by, px, py) / safe_area};
      visit(pixel, v, w);
    }
  }
}

// Barycentric interpolation of one image's attributes [V, C] at its visible
// triangles into values [H, W, C]: `interpolate`'s forward, 0 on background.
void InterpolateImage(const int32_t* ids, const float* vertices,
                      int64_t num_vertices, const int32_t* triangles,
                      int64_t num_triangles, const float* attributes,
                      int64_t channels, int32_t height, int32_t width,
                      float* values) {
  ForEachPixel(
      ids, vertices, num_vertices, triangles, num_triangles, height, width,
      [&](int64_t pixel, const int64_t v[3], const float w[3]) {
        const float* a = attributes + v[0] * channels;
        const float* b = attributes + v[1] * channels;
        const float* c = attributes + v[2] * channels;
        float* out = values + pixel * channels;
        for (int64_t k = 0; k < channels; ++k) {
          out[k] = w[0] * a[k] + w[1] * b[k] + w[2] * c[k];
        }
      },
      [&](int64_t pixel) {
        std::fill(values + pixel * channels, values + (pixel + 1) * channels,
                  0.0f);
      });
}

ffi::Error InterpolateImpl(ffi::ThreadPool pool,
                           ffi::Buffer<ffi::S32, 3> ids,
                           ffi::Buffer<ffi::F32, 3> vertices,
                           ffi::Buffer<ffi::S32, 2> triangles,
                           ffi::Buffer<ffi::F32, 3> attributes,
                           ffi::ResultBuffer<ffi::F32, 4> values) {
  const auto idims = ids.dimensions();
  const auto vdims = vertices.dimensions();
  const auto adims = attributes.dimensions();
  const int64_t batch = idims[0];
  const int32_t height = static_cast<int32_t>(idims[1]);
  const int32_t width = static_cast<int32_t>(idims[2]);
  const int64_t num_vertices = vdims[1], channels = adims[2];
  // Attributes shared by the batch come as [1, V, C].
  const bool shared = adims[0] == 1 && batch != 1;
  if (vdims[0] != batch || vdims[2] != 3 || triangles.dimensions()[1] != 3 ||
      adims[1] != num_vertices || (!shared && adims[0] != batch)) {
    return ffi::Error::InvalidArgument(
        "pnccface_interpolate: expected ids [B, H, W], vertices [B, V, 3], "
        "triangles [T, 3] and attributes [B or 1, V, C]");
  }
  const int64_t pixels = static_cast<int64_t>(height) * width;
  const int32_t* id_data = ids.typed_data();
  const float* vertex_data = vertices.typed_data();
  const int32_t* triangle_data = triangles.typed_data();
  const int64_t num_triangles = triangles.dimensions()[0];
  const float* attribute_data = attributes.typed_data();
  float* value_data = values->typed_data();
  ForEachImage(pool, batch, [=](int64_t b) {
    InterpolateImage(id_data + b * pixels,
                     vertex_data + b * num_vertices * 3, num_vertices,
                     triangle_data, num_triangles,
                     attribute_data + (shared ? 0 : b * num_vertices * channels),
                     channels, height, width,
                     value_data + b * pixels * channels);
  });
  return ffi::Error::Success();
}


// Barycentrics [H, W, 3] and depth [H, W] of one image's visible triangles:
// `rasterize`'s, 0 on background.
void BarycentricsImage(const int32_t* ids, const float* vertices,
                       int64_t num_vertices, const int32_t* triangles,
                       int64_t num_triangles, int32_t height, int32_t width,
                       float* barycentrics, float* depth) {
  ForEachPixel(
      ids, vertices, num_vertices, triangles, num_triangles, height, width,
      [&](int64_t pixel, const int64_t v[3], const float w[3]) {
        std::copy(w, w + 3, barycentrics + 3 * pixel);
        depth[pixel] = w[0] * vertices[3 * v[0] + 2] +
                       w[1] * vertices[3 * v[1] + 2] +
                       w[2] * vertices[3 * v[2] + 2];
      },
      [&](int64_t pixel) {
        std::fill(barycentrics + 3 * pixel, barycentrics + 3 * pixel + 3,
                  0.0f);
        depth[pixel] = 0.0f;
      });
}

ffi::Error BarycentricsImpl(ffi::ThreadPool pool,
                            ffi::Buffer<ffi::S32, 3> ids,
                            ffi::Buffer<ffi::F32, 3> vertices,
                            ffi::Buffer<ffi::S32, 2> triangles,
                            ffi::ResultBuffer<ffi::F32, 4> barycentrics,
                            ffi::ResultBuffer<ffi::F32, 3> depth) {
  const auto idims = ids.dimensions();
  const auto vdims = vertices.dimensions();
  const int64_t batch = idims[0];
  const int32_t height = static_cast<int32_t>(idims[1]);
  const int32_t width = static_cast<int32_t>(idims[2]);
  if (vdims[0] != batch || vdims[2] != 3 || triangles.dimensions()[1] != 3) {
    return ffi::Error::InvalidArgument(
        "pnccface_barycentrics: expected ids [B, H, W], vertices [B, V, 3] "
        "and triangles [T, 3]");
  }
  const int64_t pixels = static_cast<int64_t>(height) * width;
  const int32_t* id_data = ids.typed_data();
  const float* vertex_data = vertices.typed_data();
  const int32_t* triangle_data = triangles.typed_data();
  const int64_t num_vertices = vdims[1];
  const int64_t num_triangles = triangles.dimensions()[0];
  float* barycentric_data = barycentrics->typed_data();
  float* depth_data = depth->typed_data();
  ForEachImage(pool, batch, [=](int64_t b) {
    BarycentricsImage(id_data + b * pixels, vertex_data + b * num_vertices * 3,
                      num_vertices, triangle_data, num_triangles, height,
                      width, barycentric_data + b * pixels * 3,
                      depth_data + b * pixels);
  });
  return ffi::Error::Success();
}


// A triangle's vertex rows and edge vectors u = b - a, w = c - a.
struct Corners {
  int64_t v[3];
  float u[3], w[3];
};

inline Corners CornersOf(const float* vertices, const int32_t* triangles,
                         int64_t t, int64_t last_vertex) {
  Corners corners;
  TriangleRows(triangles, t, last_vertex, corners.v);
  const float* a = vertices + 3 * corners.v[0];
  const float* b = vertices + 3 * corners.v[1];
  const float* c = vertices + 3 * corners.v[2];
  for (int i = 0; i < 3; ++i) {
    corners.u[i] = b[i] - a[i];
    corners.w[i] = c[i] - a[i];
  }
  return corners;
}

// Area-weighted vertex normal sums of one mesh: every triangle (a, b, c)
// adds its un-normalised normal u x w to its three vertices
// (`shading.vertex_normals`' sum, corners in the same order). `faces` is
// [T, 3] scratch.
void NormalSumsImage(const float* vertices, int64_t num_vertices,
                     const int32_t* triangles, int64_t num_triangles,
                     float* faces, float* sums) {
  const int64_t last_vertex = num_vertices - 1;
  for (int64_t t = 0; t < num_triangles; ++t) {
    const Corners q = CornersOf(vertices, triangles, t, last_vertex);
    float* face = faces + 3 * t;
    face[0] = q.u[1] * q.w[2] - q.u[2] * q.w[1];
    face[1] = q.u[2] * q.w[0] - q.u[0] * q.w[2];
    face[2] = q.u[0] * q.w[1] - q.u[1] * q.w[0];
  }
  std::fill(sums, sums + 3 * num_vertices, 0.0f);
  for (int k = 0; k < 3; ++k) {  // corner by corner, as the JAX scatter-adds
    for (int64_t t = 0; t < num_triangles; ++t) {
      int64_t v[3];
      TriangleRows(triangles, t, last_vertex, v);
      for (int i = 0; i < 3; ++i) sums[3 * v[k] + i] += faces[3 * t + i];
    }
  }
}

// The transpose (vector-Jacobian product) of NormalSumsImage at `vertices`:
// with g the summed cotangent of a triangle's three vertices,
// d/du <g, u x w> = w x g and d/dw <g, u x w> = g x u.
void NormalSumsTransposeImage(const float* vertices, int64_t num_vertices,
                              const int32_t* triangles, int64_t num_triangles,
                              const float* cotangent, float* grads) {
  const int64_t last_vertex = num_vertices - 1;
  std::fill(grads, grads + 3 * num_vertices, 0.0f);
  for (int64_t t = 0; t < num_triangles; ++t) {
    const Corners q = CornersOf(vertices, triangles, t, last_vertex);
    const int64_t* v = q.v;
    float g[3];
    for (int i = 0; i < 3; ++i) {
      g[i] = cotangent[3 * v[0] + i] + cotangent[3 * v[1] + i] +
             cotangent[3 * v[2] + i];
    }
    const float du[3] = {q.w[1] * g[2] - q.w[2] * g[1],
                         q.w[2] * g[0] - q.w[0] * g[2],
                         q.w[0] * g[1] - q.w[1] * g[0]};
    const float dw[3] = {g[1] * q.u[2] - g[2] * q.u[1],
                         g[2] * q.u[0] - g[0] * q.u[2],
                         g[0] * q.u[1] - g[1] * q.u[0]};
    for (int i = 0; i < 3; ++i) {
      grads[3 * v[1] + i] += du[i];
      grads[3 * v[2] + i] += dw[i];
      grads[3 * v[0] + i] -= du[i] + dw[i];
    }
  }
}

ffi::Error CheckMesh(const char* name, ffi::Buffer<ffi::F32, 3>& vertices,
                     ffi::Buffer<ffi::S32, 2>& triangles) {
  if (vertices.dimensions()[2] != 3 || triangles.dimensions()[1] != 3) {
    return ffi::Error::InvalidArgument(
        std::string(name) + ": expected vertices [N, V, 3], triangles [T, 3]");
  }
  return ffi::Error::Success();
}

ffi::Error NormalSumsImpl(ffi::ThreadPool pool,
                          ffi::Buffer<ffi::F32, 3> vertices,
                          ffi::Buffer<ffi::S32, 2> triangles,
                          ffi::ResultBuffer<ffi::F32, 3> sums) {
  if (auto error = CheckMesh("pnccface_normal_sums", vertices, triangles);
      error.failure()) {
    return error;
  }
  const int64_t batch = vertices.dimensions()[0];
  const int64_t num_vertices = vertices.dimensions()[1];
  const int64_t num_triangles = triangles.dimensions()[0];
  const float* vertex_data = vertices.typed_data();
  const int32_t* triangle_data = triangles.typed_data();
  float* sum_data = sums->typed_data();
  ForEachImage(pool, batch, [=](int64_t n) {
    std::vector<float> faces(3 * num_triangles);
    NormalSumsImage(vertex_data + n * num_vertices * 3, num_vertices,
                    triangle_data, num_triangles, faces.data(),
                    sum_data + n * num_vertices * 3);
  });
  return ffi::Error::Success();
}

ffi::Error NormalSumsTransposeImpl(ffi::ThreadPool pool,
                                   ffi::Buffer<ffi::F32, 3> vertices,
                                   ffi::Buffer<ffi::S32, 2> triangles,
                                   ffi::Buffer<ffi::F32, 3> cotangent,
                                   ffi::ResultBuffer<ffi::F32, 3> grads) {
  if (auto error = CheckMesh("pnccface_normal_sums_transpose", vertices,
                             triangles);
      error.failure()) {
    return error;
  }
  const int64_t batch = vertices.dimensions()[0];
  const int64_t num_vertices = vertices.dimensions()[1];
  const int64_t num_triangles = triangles.dimensions()[0];
  const float* vertex_data = vertices.typed_data();
  const int32_t* triangle_data = triangles.typed_data();
  const float* cotangent_data = cotangent.typed_data();
  float* grad_data = grads->typed_data();
  ForEachImage(pool, batch, [=](int64_t n) {
    NormalSumsTransposeImage(vertex_data + n * num_vertices * 3, num_vertices,
                             triangle_data, num_triangles,
                             cotangent_data + n * num_vertices * 3,
                             grad_data + n * num_vertices * 3);
  });
  return ffi::Error::Success();
}

}  // namespace

// Aliases: the handler macro would split template arguments at their commas.
using Vertices = ffi::Buffer<ffi::F32, 3>;
using Triangles = ffi::Buffer<ffi::S32, 2>;
using Ids = ffi::Buffer<ffi::S32, 3>;

XLA_FFI_DEFINE_HANDLER_SYMBOL(PnccfaceVisibleTriangles, VisibleTrianglesImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<Vertices>()
                                  .Arg<Triangles>()
                                  .Ret<Ids>());

using Values = ffi::Buffer<ffi::F32, 4>;
using Attributes = ffi::Buffer<ffi::F32, 3>;

XLA_FFI_DEFINE_HANDLER_SYMBOL(PnccfaceInterpolate, InterpolateImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<Ids>()
                                  .Arg<Vertices>()
                                  .Arg<Triangles>()
                                  .Arg<Attributes>()
                                  .Ret<Values>());

using Depth = ffi::Buffer<ffi::F32, 3>;

XLA_FFI_DEFINE_HANDLER_SYMBOL(PnccfaceBarycentrics, BarycentricsImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<Ids>()
                                  .Arg<Vertices>()
                                  .Arg<Triangles>()
                                  .Ret<Values>()
                                  .Ret<Depth>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(PnccfaceNormalSums, NormalSumsImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<Vertices>()
                                  .Arg<Triangles>()
                                  .Ret<Vertices>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(PnccfaceNormalSumsTranspose,
                              NormalSumsTransposeImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<Vertices>()
                                  .Arg<Triangles>()
                                  .Arg<Vertices>()
                                  .Ret<Vertices>());
