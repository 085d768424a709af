using Microsoft.Win32.SafeHandles;

namespace Duroslight.Storage.Devices;

/// <summary>
/// TEST INSTRUMENTATION for the process-level power-loss test; never on unless the environment variable
/// <see cref="EnvironmentVariable"/> is "1" (the server then logs a warning at start). It wraps every
/// <see cref="IBlockIo"/> of the process and keeps, beside each file it writes (PATH), what a power loss would leave:
/// PATH.durable holds the file as of its last completed fdatasync (copied from PATH when first touched, then every
/// write that completed before a sync was submitted is applied to it once that sync completes), and PATH.lastwrite
/// the most recently submitted write (offset, length, data). After the process is killed, a test puts
/// PATH.durable in place of PATH and tears the last write back in at 512-byte granularity: every write not covered
/// by a completed sync is dropped, one is torn. Costs a copy and a lock per write: for tests only.
/// </summary>
public sealed class PowerLossShadowBlockIo(IBlockIo inner) : IBlockIo
{
    public const string EnvironmentVariable = "DUROSLIGHT_TEST_ONLY_POWER_LOSS_SHADOWS";
    public const string DurableSuffix = ".durable";
    public const string LastWriteSuffix = ".lastwrite";

    private static readonly Dictionary<string, Shadow> s_shadows = [];

    /// <summary>True when the environment asks for the instrumentation.</summary>
    public static bool Requested => Environment.GetEnvironmentVariable(EnvironmentVariable) == "1";

    public ValueTask<int> ReadAsync(SafeFileHandle file, Memory<byte> buffer, long offset)
    {
        ShadowOf(file);
        return inner.ReadAsync(file, buffer, offset);
    }

    public async ValueTask<int> WriteAsync(SafeFileHandle file, ReadOnlyMemory<byte> buffer, long offset)
    {
        Shadow shadow = ShadowOf(file);
        byte[] data = buffer.ToArray();
        shadow.Submitted(offset, data);
        int result = await inner.WriteAsync(file, buffer, offset).ConfigureAwait(false);
        if (result == data.Length)
        {
            shadow.Completed(offset, data);
        }

        return result;
    }

    public async ValueTask<int> SyncAsync(SafeFileHandle file)
    {
        Shadow shadow = ShadowOf(file);
        List<(long Offset, byte[] Data)> covered = shadow.TakeCompleted();
        int result = await inner.SyncAsync(file).ConfigureAwait(false);
        shadow.Synced(covered, result == 0);
        return result;
    }

    private static Shadow ShadowOf(SafeFileHandle file)
    {
        string path = File.ResolveLinkTarget($"/proc/self/fd/{file.DangerousGetHandle()}", returnFinalTarget: false)?.FullName
            ?? throw new IOException("cannot resolve the path of a device handle");
        lock (s_shadows)
        {
            if (!s_shadows.TryGetValue(path, out Shadow? shadow))
            {
                CopyThroughHandle(file, path + DurableSuffix);
                s_shadows.Add(path, shadow = new Shadow(path));
            }

            return shadow;
        }
    }

    /// <summary>The device is locked (flock) and maybe O_DIRECT: copy it through its own handle, aligned.</summary>
    private static void CopyThroughHandle(SafeFileHandle file, string to)
    {
        using SafeFileHandle copy = File.OpenHandle(to, FileMode.Create, FileAccess.Write);
        var buffer = new NativeBuffer(1 << 20);
        try
        {
            long length = RandomAccess.GetLength(file);
            RandomAccess.SetLength(copy, length);
            for (long offset = 0; offset < length; offset += buffer.Length)
            {
                int read = RandomAccess.Read(file, buffer.GetSpan(), offset);
                if (buffer.GetSpan()[..read].ContainsAnyExcept((byte)0))
                {
                    RandomAccess.Write(copy, buffer.GetSpan()[..read], offset);
                }
            }
        }
        finally
        {
            buffer.Free();
        }
    }

    private sealed class Shadow(string path)
    {
        private readonly SafeFileHandle _durable = File.OpenHandle(path + DurableSuffix, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        private readonly SafeFileHandle _lastWrite = File.OpenHandle(path + LastWriteSuffix, FileMode.Create, FileAccess.ReadWrite, FileShare.ReadWrite);
        private List<(long Offset, byte[] Data)> _completed = [];

        public void Submitted(long offset, byte[] data)
        {
            var record = new byte[12 + data.Length];
            BitConverter.TryWriteBytes(record, offset);
            BitConverter.TryWriteBytes(record.AsSpan(8), data.Length);
            data.CopyTo(record, 12);
            lock (this)
            {
                RandomAccess.SetLength(_lastWrite, 0);
                RandomAccess.Write(_lastWrite, record, 0);
            }
        }

        public void Completed(long offset, byte[] data)
        {
            lock (this)
            {
                _completed.Add((offset, data));
            }
        }

        public List<(long Offset, byte[] Data)> TakeCompleted()
        {
            lock (this)
            {
                List<(long Offset, byte[] Data)> taken = _completed;
                _completed = [];
                return taken;
            }
        }

        /// <summary>A completed sync makes the writes it covered durable; a failed one hands them back.</summary>
        public void Synced(List<(long Offset, byte[] Data)> covered, bool ok)
        {
            lock (this)
            {
                if (!ok)
                {
                    _completed.InsertRange(0, covered);
                    return;
                }

                foreach ((long offset, byte[] data) in covered)
                {
                    RandomAccess.Write(_durable, data, offset);
                }
            }
        }
    }
}
