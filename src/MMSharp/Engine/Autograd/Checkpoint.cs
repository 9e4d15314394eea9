namespace MMSharp.Engine.Autograd;

/// <summary>
/// Gradient checkpointing: run a block without recording its graph, keep only its inputs, and
/// recompute the block (with the same random stream) inside backward. Trades one extra forward of
/// the block for not storing its activations.
/// </summary>
public static class Checkpoint
{
    /// <summary>
    /// y = block(inputs). Parameters the block uses receive gradients as usual. The block must be a
    /// pure function of its inputs, its parameters and <see cref="Rng.Default"/>.
    /// </summary>
    public static Tensor Run(Func<Tensor[], Tensor> block, params Tensor[] inputs)
    {
        if (!GradMode.Enabled) return block(inputs);

        var rngState = Rng.Default.GetState();
        Tensor y;
        using (GradMode.NoGrad()) y = block(inputs);

        var saved = new Tensor[inputs.Length];
        for (int i = 0; i < inputs.Length; i++) saved[i] = inputs[i].SaveForBackward();
        var needsGrad = inputs.Select(t => t.RequiresGrad).ToArray();

        return y.WithGradFn("checkpoint", inputs, saved, g =>
        {
            var afterForward = Rng.Default.GetState();
            Rng.Default.SetState(rngState);
            var grads = new Tensor?[saved.Length];
            using (var scope = TensorScope.Begin())
            using (GradMode.EnableGrad())
            {
                var leaves = new Tensor[saved.Length];
                for (int i = 0; i < saved.Length; i++)
                {
                    leaves[i] = saved[i].Detach();
                    if (needsGrad[i]) leaves[i].RequiresGrad = true;
                }
                var recomputed = block(leaves);
                if (recomputed.RequiresGrad) BackwardEngine.Run(recomputed, g, retainGraph: false);
                for (int i = 0; i < leaves.Length; i++)
                {
                    grads[i] = leaves[i].Grad; // made by the nested backward: belongs to no scope
                    leaves[i].Grad = null;
                }
            }
            Rng.Default.SetState(afterForward);
            return grads;
        });
    }
}
