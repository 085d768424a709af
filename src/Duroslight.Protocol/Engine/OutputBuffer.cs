using System.Buffers;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// Bytes the engine wants sent, in order. Pooled and grown on demand; compacts when drained so a steady stream
/// of responses reuses the same array.
/// </summary>
public sealed class OutputBuffer : IDisposable
{
    private byte[] _buffer;
    private int _start;
    private int _end;

    public OutputBuffer(int initialSize = 64 * 1024) => _buffer = ArrayPool<byte>.Shared.Rent(initialSize);

    public int Length => _end - _start;

    public ReadOnlyMemory<byte> Pending => _buffer.AsMemory(_start, _end - _start);

    /// <summary>A span of at least <paramref name="size"/> writable bytes; commit them with <see cref="Advance"/>.</summary>
    public Span<byte> GetSpan(int size)
    {
        if (_buffer.Length - _end < size) MakeRoom(size);
        return _buffer.AsSpan(_end);
    }

    public void Advance(int count) => _end += count;

    public void Write(ReadOnlySpan<byte> data)
    {
        data.CopyTo(GetSpan(data.Length));
        _end += data.Length;
    }

    public void Consume(int count)
    {
        _start += count;
        if (_start == _end) _start = _end = 0;
    }

    public void Dispose()
    {
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
        _start = _end = 0;
    }

    private void MakeRoom(int size)
    {
        int live = _end - _start;
        if (_buffer.Length - live >= size && _start > 0)
        {
            _buffer.AsSpan(_start, live).CopyTo(_buffer);
        }
        else
        {
            var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(_buffer.Length * 2, live + size));
            _buffer.AsSpan(_start, live).CopyTo(bigger);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = bigger;
        }
        _start = 0;
        _end = live;
    }
}
