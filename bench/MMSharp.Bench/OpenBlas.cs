using System.Runtime.InteropServices;

namespace MMSharp.Bench;

/// <summary>The OpenBLAS reference (bench only: the library never needs it). OPENBLAS_CORETYPE must be set before it loads.</summary>
static unsafe class OpenBlas
{
    const string Lib = "libopenblas.so.0";
    public const int RowMajor = 101, NoTrans = 111, Trans = 112;

    [DllImport(Lib)]
    public static extern void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);

    [DllImport(Lib)]
    public static extern void openblas_set_num_threads(int threads);
}
