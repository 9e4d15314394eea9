namespace MMSharp.Training;

/// <summary>Shape of the learning-rate decay after warmup.</summary>
public enum LrDecay { Cosine, Linear, Constant }

/// <summary>
/// Linear warmup from 0 followed by cosine, linear or constant decay to <see cref="MinLr"/>, with the formulas of
/// Hugging Face <c>transformers.optimization</c> (<c>get_cosine_schedule_with_warmup</c>,
/// <c>get_cosine_with_min_lr_schedule_with_warmup</c>, <c>get_linear_schedule_with_warmup</c>,
/// <c>get_constant_schedule_with_warmup</c>), which the official InternVL scripts use through HF Trainer
/// (<c>--lr_scheduler_type cosine --warmup_ratio 0.03</c>).
/// </summary>
/// <remarks>
/// With s = the number of optimizer updates already applied (HF's <c>current_step</c>: the first update uses s = 0,
/// because <c>LambdaLR</c> sets the lr at construction and <c>scheduler.step()</c> runs after <c>optimizer.step()</c>),
/// W warmup steps, T total steps and r = MinLr / PeakLr:
/// <code>
/// s &lt; W:     factor = s / max(1, W)
/// cosine:    p = (s - W) / max(1, T - W);  factor = max(0, r + (1 - r) · 0.5 · (1 + cos(π p)))
/// linear:    factor = max(r, r + (1 - r) · (T - s) / max(1, T - W))   (HF's formula when r = 0)
/// constant:  factor = 1
/// lr = PeakLr · factor
/// </code>
/// HF's cosine has no floor at p &gt; 1 other than max(0, ·), so a run longer than T climbs back up the cosine; so does this.
/// Warmup steps from a ratio: <c>ceil(T · ratio)</c> (HF <c>TrainingArguments.get_warmup_steps</c>).
/// </remarks>
public sealed record LrSchedule(double PeakLr, int TotalSteps, int WarmupSteps = 0, LrDecay Decay = LrDecay.Cosine, double MinLr = 0)
{
    /// <summary>HF's <c>math.ceil(num_training_steps * warmup_ratio)</c>.</summary>
    public static int WarmupStepsFromRatio(double ratio, int totalSteps)
    {
        if (ratio < 0 || ratio > 1) throw new ArgumentOutOfRangeException(nameof(ratio), $"warmup ratio {ratio} must be in [0, 1]");
        return (int)Math.Ceiling(totalSteps * ratio);
    }

    /// <summary>The learning rate of the update that follows <paramref name="completedSteps"/> earlier updates.</summary>
    public double LrAt(long completedSteps)
    {
        if (completedSteps < 0) throw new ArgumentOutOfRangeException(nameof(completedSteps));
        double s = completedSteps;
        if (s < WarmupSteps) return PeakLr * (s / Math.Max(1, WarmupSteps));
        double r = PeakLr == 0 ? 0 : MinLr / PeakLr;
        double span = Math.Max(1, TotalSteps - WarmupSteps);
        double factor = Decay switch
        {
            LrDecay.Cosine => Math.Max(0, r + (1 - r) * 0.5 * (1 + Math.Cos(Math.PI * ((s - WarmupSteps) / span)))),
            LrDecay.Linear => Math.Max(r, r + (1 - r) * ((TotalSteps - s) / span)),
            _ => 1.0,
        };
        return PeakLr * factor;
    }
}
