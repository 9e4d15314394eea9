namespace MMSharp.Engine.Kernels;

/// <summary>Naive triple loop with the same operand conventions as <see cref="Gemm"/>: the reference the fast kernels are tested against.</summary>
internal static unsafe class GemmReference
{
    internal static void Sgemm(int m, int n, int k, float* a, long aRow, long aCol, float* b, long bRow, long bCol, float* c, long ldc, float beta)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double acc = 0;
                for (int p = 0; p < k; p++) acc += (double)a[i * aRow + p * aCol] * b[p * bRow + j * bCol];
                float* dst = c + i * ldc + j;
                *dst = beta == 0f ? (float)acc : (float)(acc + (double)beta * *dst);
            }
    }

    internal static void SgemmBF16(int m, int n, int k, float* a, long aRow, long aCol, ushort* b, long bRow, long bCol, float* c, long ldc, float beta)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double acc = 0;
                for (int p = 0; p < k; p++) acc += (double)a[i * aRow + p * aCol] * Half16.BF16ToFloat(b[p * bRow + j * bCol]);
                float* dst = c + i * ldc + j;
                *dst = beta == 0f ? (float)acc : (float)(acc + (double)beta * *dst);
            }
    }
}
