using MMSharp.Engine;

namespace MMSharp.NN;

/// <summary>Token embedding table <c>weight</c> [num_embeddings, dim] (F32 or BF16, rows widened to F32 on lookup).</summary>
/// <remarks>y[..., :] = weight[ids[...], :] (<see cref="Ops.Embedding"/>).</remarks>
public sealed class Embedding : Module
{
    public readonly Parameter Weight;
    public int NumEmbeddings => Weight.Shape[0];
    public int Dim => Weight.Shape[1];

    public Embedding(int numEmbeddings, int dim, DType dtype = DType.F32) =>
        Weight = RegisterParameter("weight", [numEmbeddings, dim], dtype);

    /// <summary>ids [...] (I64 or I32) -> F32 [..., dim].</summary>
    public Tensor Forward(Tensor ids)
    {
        using var _ = Profiler.Time(ProfileCategory.Embedding);
        return Ops.Embedding(ids, Weight);
    }

    public override string ToString() => $"Embedding({NumEmbeddings}, {Dim}, {Weight.DType})";
}
