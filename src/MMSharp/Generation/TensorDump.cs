using MMSharp.Engine;
using MMSharp.Engine.IO;
using MMSharp.Models.InternVL;

namespace MMSharp.Generation;

/// <summary>
/// <c>--dump-tensors DIR</c>: the tensors of the first forward as .npy (v1.0, little-endian, C order), to compare
/// stage by stage with the Python reference: input_ids (int64 [T]), pixel_values (float32 [tiles, 3, S, S]),
/// vit_last_hidden_state (float32 [tiles, 1 + patches, C_vit]), vision_features (float32 [tiles, num_image_token, C_llm],
/// after mlp1), logits (float32 [T, vocab], every prompt position), generated_ids (int64 [new tokens]) and, for
/// video, frame_indices (int64 [frames]).
/// </summary>
public static class TensorDump
{
    /// <summary>Runs a full forward with taps and writes everything but generated_ids.</summary>
    public static void WritePrompt(string directory, InternVLChatModel model, int[] inputIds, Tensor? pixelValues)
    {
        Directory.CreateDirectory(directory);
        using var ids = Tensor.FromArray(inputIds.Select(i => (long)i).ToArray(), inputIds.Length);
        Npy.Write(Path.Combine(directory, "input_ids.npy"), ids);
        string lastVit = $"vit.layers.{model.Config.VisionLayersUsed - 1}";
        var old = model.Tap;
        model.Tap = (name, t) =>
        {
            old?.Invoke(name, t);
            if (name == lastVit) WriteF32(directory, "vit_last_hidden_state.npy", t);
            else if (name == "vision_features") WriteF32(directory, "vision_features.npy", t);
        };
        try
        {
            if (pixelValues != null) WriteF32(directory, "pixel_values.npy", pixelValues);
            using var ids2 = Ops.Reshape(ids, 1, inputIds.Length);
            using var _ = Engine.Autograd.GradMode.NoGrad();
            using var logits = model.Forward(ids2, pixelValues);                       // [1, T, V]
            using var flat = Ops.Reshape(logits, inputIds.Length, logits.Shape[2]);
            WriteF32(directory, "logits.npy", flat);
        }
        finally { model.Tap = old; }
    }

    /// <summary>generated_ids.npy (int64 [new tokens]).</summary>
    public static void WriteGenerated(string directory, IReadOnlyList<int> generated) =>
        WriteLongs(directory, "generated_ids.npy", generated.Select(i => (long)i).ToArray());

    /// <summary>frame_indices.npy (int64 [frames]).</summary>
    public static void WriteFrameIndices(string directory, IReadOnlyList<int> frameIndices) =>
        WriteLongs(directory, "frame_indices.npy", frameIndices.Select(i => (long)i).ToArray());

    static void WriteLongs(string directory, string name, long[] values)
    {
        Directory.CreateDirectory(directory);
        using var t = Tensor.FromArray(values, values.Length);
        Npy.Write(Path.Combine(directory, name), t);
    }

    static void WriteF32(string directory, string name, Tensor t)
    {
        using var c = Ops.Contiguous(t, DType.F32);
        Npy.Write(Path.Combine(directory, name), c);
    }
}
