using System.Diagnostics;

namespace MMSharp.Engine.Kernels;

/// <summary>
/// A fixed set of persistent worker threads for kernels. Work items are numbered; each item must
/// write disjoint outputs and compute them in a fixed order, so results do not depend on which
/// thread ran which item (run-to-run identical for a fixed thread count). The calling thread takes
/// part. Nested calls from inside a work item run serially.
/// Thread count: <c>MMSHARP_THREADS</c> or the processor count; settable with <see cref="Threads"/>.
/// </summary>
/// <remarks>
/// Workers spin for a short while (<see cref="SpinMicroseconds"/>) after each job before blocking on a
/// semaphore, so the back-to-back small jobs of a decode step (one GEMV per layer) start within a
/// fraction of a microsecond instead of paying a kernel wake-up each time.
/// </remarks>
public static class Par
{
    static readonly object StartGate = new();
    static Worker[] _workers = [];
    static int _threads = DefaultThreads();
    [ThreadStatic] static bool _inside;

    /// <summary>How long an idle worker polls for the next job before it sleeps.</summary>
    public static int SpinMicroseconds { get; set; } = 200;

    /// <summary>One Par.For call. Workers that wake late find every item claimed and leave without touching the
    /// next job, so the caller waits only for items to finish, never for a descheduled worker to show up.</summary>
    sealed class Job(Action<int> body, int count)
    {
        public readonly Action<int> Body = body;
        public readonly int Count = count;
        public int Next;
        public int Pending = count;
        public Exception? Error;
    }

    static Job? _current;

    static int DefaultThreads()
    {
        var env = Environment.GetEnvironmentVariable("MMSHARP_THREADS");
        if (int.TryParse(env, out int t) && t > 0) return t;
        return Environment.ProcessorCount;
    }

    public static int Threads
    {
        get => _threads;
        set
        {
            if (value < 1) throw new ArgumentOutOfRangeException(nameof(value));
            lock (StartGate) _threads = value;
        }
    }

    sealed class Worker(int index)
    {
        public readonly int Index = index;
        public readonly SemaphoreSlim Wake = new(0);
        /// <summary>1 while the worker is (about to be) blocked on <see cref="Wake"/>.</summary>
        public int Sleeping;
        /// <summary>Bumped by the publisher for each job this worker takes part in.</summary>
        public int Job;
    }

    static void EnsureWorkers(int n)
    {
        if (_workers.Length >= n) return;
        var list = _workers.ToList();
        while (list.Count < n)
        {
            var w = new Worker(list.Count);
            var th = new Thread(() => WorkerLoop(w)) { IsBackground = true, Name = $"mmsharp-worker-{list.Count}" };
            list.Add(w);
            _workers = list.ToArray();
            th.Start();
        }
    }

    static void WorkerLoop(Worker w)
    {
        _inside = true;
        int seen = 0;
        while (true)
        {
            // spin, then sleep, until a job for this worker is published
            long spinUntil = Stopwatch.GetTimestamp() + SpinMicroseconds * Stopwatch.Frequency / 1_000_000;
            int job;
            while ((job = Volatile.Read(ref w.Job)) == seen)
            {
                if (Stopwatch.GetTimestamp() < spinUntil) { Thread.SpinWait(30); continue; }
                Interlocked.Exchange(ref w.Sleeping, 1);
                if (Volatile.Read(ref w.Job) != seen)
                {
                    // a job arrived meanwhile: cancel the sleep, or consume the wake-up the publisher already gave
                    if (Interlocked.Exchange(ref w.Sleeping, 0) == 0) w.Wake.Wait();
                    continue;
                }
                w.Wake.Wait();
            }
            seen = job;
            var current = Volatile.Read(ref _current);
            if (current != null) RunItems(current);
        }
    }

    static void RunItems(Job job)
    {
        while (true)
        {
            int i = Interlocked.Increment(ref job.Next) - 1;
            if (i >= job.Count) break;
            try { job.Body(i); }
            catch (Exception e) { Interlocked.CompareExchange(ref job.Error, e, null); }
            Interlocked.Decrement(ref job.Pending);
        }
    }

    /// <summary>Runs body(0..count-1) on up to <see cref="Threads"/> threads and waits for all.</summary>
    public static void For(int count, Action<int> body)
    {
        if (count <= 0) return;
        int threads = Math.Min(_threads, count);
        if (threads <= 1 || _inside)
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        lock (StartGate)
        {
            EnsureWorkers(threads - 1);
            var job = new Job(body, count);
            Volatile.Write(ref _current, job);
            for (int i = 0; i < threads - 1; i++)
            {
                var w = _workers[i];
                Interlocked.Increment(ref w.Job);
                if (Interlocked.Exchange(ref w.Sleeping, 0) == 1) w.Wake.Release();
            }
            _inside = true;
            try { RunItems(job); }
            finally { _inside = false; }
            var spin = new SpinWait();
            while (Volatile.Read(ref job.Pending) > 0) spin.SpinOnce(-1);
            Volatile.Write(ref _current, null);
            if (job.Error != null) throw new AggregateException("a parallel work item failed", job.Error);
        }
    }

    /// <summary>Splits [0, total) into one contiguous chunk per thread (at least <paramref name="grain"/> long) and runs body(start, end).</summary>
    public static void ForChunks(long total, long grain, Action<long, long> body)
    {
        if (total <= 0) return;
        int chunks = (int)Math.Max(1, Math.Min(_threads, total / Math.Max(1, grain)));
        if (chunks == 1) { body(0, total); return; }
        For(chunks, c =>
        {
            long s = total * c / chunks, e = total * (c + 1) / chunks;
            body(s, e);
        });
    }
}
