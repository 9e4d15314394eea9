namespace MMSharp.Engine.Kernels;

/// <summary>
/// General matrix multiply on fp32 activations: C[m, n] = sum_k A[m, k] * B[k, n] (+ beta * C).
/// Operands are given by pointer and (row, column) strides in elements, so transposed operands
/// need no copy. B may be BF16 (raw 16-bit words), widened on the fly.
/// </summary>
public static unsafe class Gemm
{
    /// <summary>C = A·B + beta·C with fp32 B. A(i,k) = a[i*aRow + k*aCol]; B(k,j) = b[k*bRow + j*bCol]; C(i,j) = c[i*ldc + j].</summary>
    public static void Sgemm(int m, int n, int k, float* a, long aRow, long aCol, float* b, long bRow, long bCol, float* c, long ldc, float beta = 0f)
    {
        // Placeholder reference implementation; the packed, blocked kernels replace it.
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float acc = 0;
                for (int p = 0; p < k; p++) acc += a[i * aRow + p * aCol] * b[p * bRow + j * bCol];
                float* dst = c + i * ldc + j;
                *dst = beta == 0f ? acc : acc + beta * *dst;
            }
    }

    /// <summary>As <see cref="Sgemm"/> with B stored as BF16 words.</summary>
    public static void SgemmBF16(int m, int n, int k, float* a, long aRow, long aCol, ushort* b, long bRow, long bCol, float* c, long ldc, float beta = 0f)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float acc = 0;
                for (int p = 0; p < k; p++) acc += a[i * aRow + p * aCol] * Half16.BF16ToFloat(b[p * bRow + j * bCol]);
                float* dst = c + i * ldc + j;
                *dst = beta == 0f ? acc : acc + beta * *dst;
            }
    }
}
