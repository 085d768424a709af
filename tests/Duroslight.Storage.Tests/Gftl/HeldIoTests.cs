using Duroslight.Core;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>
/// Base of the tests that hold device I/O on the test thread (<see cref="HeldBlockIo"/>): a scratch device set, and
/// afterwards the thread's block I/O and synchronization context as they were (the tests run without a context, so
/// completions continue inline on the thread that releases them).
/// </summary>
public abstract class HeldIoTests : IDisposable
{
    protected const int Block = 4096;

    private readonly SynchronizationContext? _context = SynchronizationContext.Current;

    private protected GftlScratch Scratch { get; } = new();

    public void Dispose()
    {
        BlockIo.InstallForCurrentThread(null);
        SynchronizationContext.SetSynchronizationContext(_context);
        Scratch.Dispose();
        GC.SuppressFinalize(this);
    }
}
