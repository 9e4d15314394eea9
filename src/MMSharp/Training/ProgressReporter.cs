using System.Globalization;

namespace MMSharp.Training;

/// <summary>
/// Shows training progress: on a terminal one line rewritten in place at every step
/// (<c>step 120/400 [=====>    ] loss 1.2345 lr 9.8e-06 1234 tok/s ETA 05:12</c>); otherwise (redirected output, CI logs)
/// a plain line every <see cref="LogInterval"/> steps and at the last step.
/// </summary>
public sealed class ProgressReporter
{
    readonly TextWriter _out;
    readonly bool _interactive;
    int _lastWidth;

    public long TotalSteps { get; }
    public int LogInterval { get; }

    /// <summary>
    /// Writes to <paramref name="output"/> (default: the console). <paramref name="interactive"/> (one rewritten line)
    /// defaults to "writing to a console whose output is not redirected".
    /// </summary>
    public ProgressReporter(long totalSteps, int logInterval = 1, TextWriter? output = null, bool? interactive = null)
    {
        TotalSteps = totalSteps;
        LogInterval = Math.Max(1, logInterval);
        _out = output ?? Console.Out;
        _interactive = interactive ?? (output == null && !Console.IsOutputRedirected);
    }

    /// <summary>Reports step <paramref name="step"/>; <paramref name="elapsedThisRun"/> and <paramref name="stepsThisRun"/> give the ETA.</summary>
    public void Report(long step, double loss, double lr, double tokensPerSecond, double elapsedThisRun, long stepsThisRun, double? valLoss = null)
    {
        bool last = step >= TotalSteps;
        if (!_interactive && step % LogInterval != 0 && !last && valLoss == null) return;
        double eta = stepsThisRun > 0 ? elapsedThisRun / stepsThisRun * Math.Max(0, TotalSteps - step) : 0;
        var ci = CultureInfo.InvariantCulture;
        string text = string.Create(ci, $"step {step}/{TotalSteps} loss {loss:F4} lr {lr:0.###e+00} {tokensPerSecond:F0} tok/s ETA {Clock(eta)}");
        if (valLoss is { } v) text += string.Create(ci, $" val_loss {v:F4}");
        if (_interactive)
        {
            const int barWidth = 20;
            int filled = TotalSteps > 0 ? (int)(barWidth * Math.Min(1.0, (double)step / TotalSteps)) : barWidth;
            string bar = "[" + new string('=', filled) + (filled < barWidth ? ">" + new string(' ', barWidth - filled - 1) : "") + "] ";
            string line = bar + text;
            _out.Write("\r" + line + new string(' ', Math.Max(0, _lastWidth - line.Length)));
            _lastWidth = line.Length;
            if (last) _out.WriteLine();
        }
        else _out.WriteLine(text);
        _out.Flush();
    }

    /// <summary>Prints a message without breaking the progress line.</summary>
    public void Message(string text)
    {
        if (_interactive && _lastWidth > 0) { _out.Write("\r" + new string(' ', _lastWidth) + "\r"); _lastWidth = 0; }
        _out.WriteLine(text);
    }

    static string Clock(double seconds)
    {
        var t = TimeSpan.FromSeconds(Math.Round(seconds));
        return t.TotalHours >= 1 ? $"{(int)t.TotalHours}:{t.Minutes:D2}:{t.Seconds:D2}" : $"{t.Minutes:D2}:{t.Seconds:D2}";
    }
}
