using Duroslight.Core;
using Duroslight.Storage.Volumes;

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

    /// <summary>Writes <paramref name="count"/> blocks of data seeded by <paramref name="value"/> (also into the model) and releases the device writes.</summary>
    private protected static void Write(IBlockVolume volume, HeldBlockIo io, byte[] model, int lba, int count, int value)
    {
        ValueTask<StorageResult> write = Start(volume, model, lba, count, value);
        io.ReleaseAll();
        Assert.True(write.IsCompletedSuccessfully);
    }

    /// <summary>The operation has completed, with Ok.</summary>
    private protected static void AssertOk(ValueTask<StorageResult> operation)
    {
        Assert.True(operation.IsCompleted);
        Assert.Equal(StorageResult.Ok, operation.Result);
    }

    /// <summary>Starts that write without releasing anything.</summary>
    private protected static ValueTask<StorageResult> Start(IBlockVolume volume, byte[] model, int lba, int count, int value)
    {
        byte[] data = new byte[count * Block];
        new Random(value).NextBytes(data);
        data.CopyTo(model, lba * Block);
        return volume.WriteAsync((long)lba * Block, data);
    }
}
