namespace MMSharp.Training;

/// <summary>What the trainer does with a step.</summary>
public enum StepVerdict { Apply, Skip }

/// <summary>Thrown when training stops because too many consecutive steps had a non-finite loss or gradient.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);

/// <summary>
/// Policy for steps whose loss or gradient norm is NaN or infinite: the update is skipped (weights and optimizer
/// state untouched) with a warning, and after <see cref="MaxConsecutiveBadSteps"/> such steps in a row training
/// stops with a <see cref="TrainingDivergedException"/>. The last checkpoint on disk is never touched by this.
/// </summary>
public sealed class NonFiniteGuard(int maxConsecutiveBadSteps = 5, TextWriter? log = null)
{
    public int MaxConsecutiveBadSteps { get; } = maxConsecutiveBadSteps > 0 ? maxConsecutiveBadSteps
        : throw new ArgumentOutOfRangeException(nameof(maxConsecutiveBadSteps), "must be at least 1");

    /// <summary>Bad steps in a row so far (saved in checkpoints so resume continues the count).</summary>
    public int Consecutive { get; set; }

    /// <summary>Bad steps over the whole run.</summary>
    public int Total { get; set; }

    /// <summary>Judges step <paramref name="step"/>; throws once the limit of consecutive bad steps is reached.</summary>
    public StepVerdict Check(long step, double loss, double gradNorm)
    {
        if (double.IsFinite(loss) && double.IsFinite(gradNorm))
        {
            Consecutive = 0;
            return StepVerdict.Apply;
        }
        Consecutive++;
        Total++;
        string what = !double.IsFinite(loss) ? $"loss {loss}" : $"gradient norm {gradNorm}";
        if (Consecutive >= MaxConsecutiveBadSteps)
            throw new TrainingDivergedException(
                $"step {step}: {what}; {Consecutive} consecutive steps had a non-finite loss or gradient, stopping. " +
                "The last saved checkpoint is intact: lower the learning rate or check the data, then resume from it.");
        (log ?? Console.Error).WriteLine($"warning: step {step}: {what}; update skipped ({Consecutive}/{MaxConsecutiveBadSteps} consecutive)");
        return StepVerdict.Skip;
    }
}
