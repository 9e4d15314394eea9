using MMSharp.Engine.Kernels;

namespace MMSharp.Tests.Kernels;

/// <summary>The worker pool: every item runs exactly once per call, errors surface, back-to-back jobs do not mix.</summary>
public sealed class ParTests
{
    [Fact]
    public void For_RunsEveryItemOnce_AcrossManyBackToBackJobs()
    {
        int saved = Par.Threads;
        try
        {
            Par.Threads = 2;
            for (int job = 0; job < 2000; job++)
            {
                int count = 1 + job % 7;
                var hits = new int[count];
                Par.For(count, i => Interlocked.Increment(ref hits[i]));
                Assert.All(hits, h => Assert.Equal(1, h));
                if (job % 500 == 0) Thread.Sleep(2); // let the workers fall asleep now and then
            }
        }
        finally { Par.Threads = saved; }
    }

    [Fact]
    public void For_Throws_WhenAnItemFails()
    {
        int saved = Par.Threads;
        try
        {
            Par.Threads = 2;
            var e = Assert.Throws<AggregateException>(() => Par.For(4, i => { if (i == 3) throw new InvalidOperationException("item 3"); }));
            Assert.Contains("item 3", e.InnerException!.Message);
            int sum = 0;
            Par.For(4, i => Interlocked.Add(ref sum, i));
            Assert.Equal(6, sum);
        }
        finally { Par.Threads = saved; }
    }
}
