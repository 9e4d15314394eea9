namespace MMSharp.Engine.Autograd;

/// <summary>Whether ops record a graph on this thread. <c>using (GradMode.NoGrad()) { ... }</c> for inference.</summary>
public static class GradMode
{
    [ThreadStatic] static int _disabled;

    public static bool Enabled => _disabled == 0;

    public static IDisposable NoGrad()
    {
        _disabled++;
        return new Restore(() => _disabled--);
    }

    /// <summary>Re-enables recording inside a no-grad region (used by gradient checkpointing).</summary>
    public static IDisposable EnableGrad()
    {
        int saved = _disabled;
        _disabled = 0;
        return new Restore(() => _disabled = saved);
    }

    sealed class Restore(Action undo) : IDisposable
    {
        bool _done;
        public void Dispose() { if (!_done) { _done = true; undo(); } }
    }
}
