using System.Numerics.Tensors;

namespace MMSharp.Engine.Autograd;

/// <summary>
/// Reverse-mode sweep over the recorded graph. Nodes run in dependency order (a node's backward
/// runs once every consumer of its output has delivered its gradient), gradients of leaves
/// accumulate into <see cref="Tensor.Grad"/>, and each node's saved tensors are released right
/// after its backward unless the graph is retained.
/// Ownership: gradient tensors returned by backward functions belong to the engine; one that is
/// stored (as a pending gradient or a leaf gradient) is claimed, the rest are disposed at once.
/// A leaf gradient is always exclusively owned, so later accumulation can add in place.
/// </summary>
public static class BackwardEngine
{
    public static void Run(Tensor root, Tensor? gradient, bool retainGraph)
    {
        if (!root.RequiresGrad)
            throw new InvalidOperationException($"{root.Describe()} does not require grad and has no grad function");
        using var unscoped = TensorScope.Suspend();
        using var noGrad = GradMode.NoGrad();

        Tensor g0;
        if (gradient == null)
        {
            if (root.NumEl != 1) throw new InvalidOperationException($"backward of non-scalar {root.Describe()} needs an explicit gradient");
            g0 = Tensor.Full(root.Shape, 1f);
        }
        else
        {
            if (!gradient.Shape.AsSpan().SequenceEqual(root.Shape))
                throw new ArgumentException($"gradient shape {Tensor.ShapeString(gradient.Shape)} does not match {root.Describe()}");
            g0 = ToOwnedF32(gradient);
        }

        var rootNode = root.GradFn;
        if (rootNode == null)
        {
            AccumulateLeaf(root, g0, claimable: true);
            return;
        }

        // Count, for each node, how many edges from nodes in this graph point to it.
        var visited = new HashSet<Node>(ReferenceEqualityComparer.Instance) { rootNode };
        var stack = new Stack<Node>();
        stack.Push(rootNode);
        rootNode.Dependencies = 0;
        while (stack.Count > 0)
        {
            var n = stack.Pop();
            foreach (var inp in n.Inputs)
            {
                var fn = inp.GradFn;
                if (fn == null) continue;
                if (visited.Add(fn)) { fn.Dependencies = 0; stack.Push(fn); }
                fn.Dependencies++;
            }
        }

        rootNode.PendingGrad = g0;
        var ready = new Stack<Node>();
        ready.Push(rootNode);
        var claimed = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        while (ready.Count > 0)
        {
            var node = ready.Pop();
            var g = node.PendingGrad;
            node.PendingGrad = null;
            var inputs = node.Inputs;
            long t0 = Profiler.Enabled ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
            Tensor?[] grads = g == null ? new Tensor?[inputs.Length] : node.Apply(g);
            long t1 = Profiler.Enabled ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
            if (Profiler.Enabled) Profiler.Book("bwd " + node.Name, t1 - t0);
            if (grads.Length != inputs.Length)
                throw new InvalidOperationException($"backward of '{node.Name}' returned {grads.Length} gradients for {inputs.Length} inputs");

            claimed.Clear();
            for (int i = 0; i < inputs.Length; i++)
            {
                var inp = inputs[i];
                var gi = grads[i];
                var fn = inp.GradFn;
                if (gi != null && (fn != null || inp.RequiresGrad))
                {
                    if (!gi.Shape.AsSpan().SequenceEqual(inp.Shape))
                        throw new InvalidOperationException(
                            $"backward of '{node.Name}' gave a gradient of shape {Tensor.ShapeString(gi.Shape)} for input {i}, {inp.Describe()}");
                    if (gi.DType != DType.F32 || !gi.IsContiguous)
                    {
                        var view = gi;
                        grads[i] = gi = Ops.Contiguous(view, DType.F32);
                        // the engine owns the returned view: drop it now unless another slot (disposed below) holds it,
                        // or its storage stays referenced and never returns to the pool (a fresh buffer every step)
                        if (!ReferenceEquals(view, g) && CountOf(grads, view) == 0) view.Dispose();
                    }
                    if (fn != null)
                    {
                        var owned = claimed.Add(gi) ? gi : gi.Alias(register: false);
                        if (fn.PendingGrad == null) fn.PendingGrad = owned;
                        else
                        {
                            var sum = AddNew(fn.PendingGrad, owned);
                            fn.PendingGrad.Dispose();
                            owned.Dispose();
                            fn.PendingGrad = sum;
                        }
                    }
                    else
                    {
                        bool claim = !claimed.Contains(gi) && gi.Storage.RefCount == 1 && CountOf(grads, gi) == 1;
                        if (claim) claimed.Add(gi);
                        AccumulateLeaf(inp, gi, claim);
                    }
                }
                if (fn != null && --fn.Dependencies == 0) ready.Push(fn);
            }

            // Dispose whatever the backward made that nobody stored; keep the claimed ones.
            foreach (var gi in grads)
                if (gi != null && !claimed.Contains(gi)) gi.Dispose();
            if (g != null && !claimed.Contains(g)) g.Dispose();
            if (!retainGraph) node.Release();
            if (Profiler.Enabled) Profiler.Book("bwd (gradient routing, accumulation, release)", System.Diagnostics.Stopwatch.GetTimestamp() - t1);
        }
    }

    static int CountOf(Tensor?[] grads, Tensor t)
    {
        int c = 0;
        foreach (var x in grads) if (ReferenceEquals(x, t)) c++;
        return c;
    }

    /// <summary>Adds <paramref name="g"/> into the leaf's gradient. <paramref name="claimable"/>: g may become the
    /// leaf's gradient itself (no one else uses its memory); otherwise it is copied.</summary>
    static void AccumulateLeaf(Tensor leaf, Tensor g, bool claimable)
    {
        var existing = leaf.Grad;
        if (existing == null || existing.IsDisposed)
        {
            leaf.Grad = claimable ? g : Ops.Clone(g);
            return;
        }
        if (!existing.Shape.AsSpan().SequenceEqual(leaf.Shape) || existing.DType != DType.F32 || !existing.IsContiguous)
            throw new InvalidOperationException($"the existing .Grad of {leaf.Describe()} is {existing.Describe()}; expected contiguous F32 of the same shape");
        if (existing.Storage.RefCount == 1)
        {
            AddInto(existing, g);
            existing.BumpVersion();
        }
        else
        {
            leaf.Grad = AddNew(existing, g);
            existing.Dispose();
        }
        if (claimable) g.Dispose();
    }

    static unsafe Tensor AddNew(Tensor a, Tensor b)
    {
        var r = Tensor.Empty(a.Shape);
        long n = a.NumEl;
        float* pa = a.F32Ptr, pb = b.F32Ptr, pr = r.F32Ptr;
        for (long off = 0; off < n; off += int.MaxValue / 2)
        {
            int len = (int)Math.Min(n - off, int.MaxValue / 2);
            TensorPrimitives.Add(new ReadOnlySpan<float>(pa + off, len), new ReadOnlySpan<float>(pb + off, len), new Span<float>(pr + off, len));
        }
        return r;
    }

    static unsafe void AddInto(Tensor dst, Tensor src)
    {
        long n = dst.NumEl;
        float* pd = dst.F32Ptr, ps = src.F32Ptr;
        for (long off = 0; off < n; off += int.MaxValue / 2)
        {
            int len = (int)Math.Min(n - off, int.MaxValue / 2);
            TensorPrimitives.Add(new ReadOnlySpan<float>(pd + off, len), new ReadOnlySpan<float>(ps + off, len), new Span<float>(pd + off, len));
        }
    }

    static Tensor ToOwnedF32(Tensor t) => Ops.Clone(t, DType.F32);
}
