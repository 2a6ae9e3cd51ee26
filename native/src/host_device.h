#pragma once
// Functions shared word for word by the CPU and CUDA code (gamma_kernel.h, sobel_columns.h): device and host
// functions under nvcc, plain inline functions elsewhere.
#ifdef __CUDACC__
#define VMAT_HD __host__ __device__ __forceinline__
#else
#define VMAT_HD inline
#endif
