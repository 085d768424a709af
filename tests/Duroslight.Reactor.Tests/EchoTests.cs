using System.Net;
using System.Net.Sockets;
using Duroslight.Core;

namespace Duroslight.Reactor.Tests;

/// <summary>Sockets through the ring without the NVMe engine: multishot accept, recv, send, close.</summary>
public sealed class EchoTests
{
    /// <summary>Busy mode too: a polling shard enters the kernel only when the ring flags completion work for it.</summary>
    [Theory]
    [InlineData(PollMode.Sleep)]
    [InlineData(PollMode.Busy)]
    public async Task Echo_server_on_two_shards_returns_every_byte_of_many_connections(PollMode mode)
    {
        using var group = ShardTests.Started(2, mode);
        using var listener = Listen();
        int next = 0;
        var acceptor = new Acceptor(group[0], listener, socket =>
        {
            var shard = group[next++ % group.Count];
            shard.Post(new Echo(shard, socket));
        });
        acceptor.Start();
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;

        // Framed like NVMe/TCP PDUs: an 8-byte header announcing the length, then the payload, in odd-sized writes.
        var clients = Enumerable.Range(0, 16).Select(i => Task.Run(() => EchoRoundsAsync(port, i, rounds: 20, framed: true))).ToArray();
        await Task.WhenAll(clients).WaitAsync(TimeSpan.FromSeconds(60));
        await acceptor.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
    }

    /// <summary>
    /// A receive armed on an idle socket completes through deferred task work, which only entering the kernel runs:
    /// a busy shard with nothing to submit must still enter when the ring says such work waits.
    /// </summary>
    [Theory]
    [InlineData(PollMode.Sleep)]
    [InlineData(PollMode.Busy)]
    public async Task A_receive_armed_before_the_data_arrives_completes(PollMode mode)
    {
        using var group = ShardTests.Started(1, mode);
        using var listener = Listen();
        var acceptor = new Acceptor(group[0], listener, socket => group[0].Post(new Echo(group[0], socket)));
        acceptor.Start();
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndPoint!).Port);
        var back = new byte[1];
        for (byte i = 1; i <= 5; i++)
        {
            await Task.Delay(100); // the echo's receive is armed and waiting by now
            await client.SendAsync(new[] { i }, SocketFlags.None);
            Assert.Equal(1, await client.ReceiveAsync(back, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(10)));
            Assert.Equal(i, back[0]);
        }
        client.Close();
        await acceptor.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
    }

    /// <summary>
    /// Receives into the shard's provided buffers (multishot): 64 connections with up to 300 KB in flight each need
    /// more buffers at once than a shard has, so receives also end with -ENOBUFS and are re-armed; every byte must
    /// still come back in order. A connection that pauses (cancels its receive) gets nothing until it re-arms.
    /// </summary>
    [Theory]
    [InlineData(PollMode.Sleep)]
    [InlineData(PollMode.Busy)]
    public async Task Receives_into_provided_buffers_lose_nothing_when_buffers_run_out_or_a_receive_is_cancelled(PollMode mode)
    {
        using var group = ShardTests.Started(1, mode);
        using var listener = Listen();
        var echoes = new List<SelectEcho>();
        var acceptor = new Acceptor(group[0], listener, socket =>
        {
            var echo = new SelectEcho(group[0], socket, pauseEvery: echoes.Count % 2 == 0 ? 3 : 0);
            echoes.Add(echo);
            group[0].Post(echo);
        });
        acceptor.Start();
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        var clients = Enumerable.Range(0, 64).Select(i => Task.Run(() => EchoRoundsAsync(port, i, rounds: 6, framed: false))).ToArray();
        await Task.WhenAll(clients).WaitAsync(TimeSpan.FromSeconds(120));
        await acceptor.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains(echoes, e => e.Pauses > 0);
    }

    [Fact]
    public async Task Stopped_acceptor_lets_go_of_the_socket()
    {
        using var group = ShardTests.Started(1);
        var listener = Listen();
        var endPoint = (IPEndPoint)listener.LocalEndPoint!;
        var acceptor = new Acceptor(group[0], listener, static socket => socket.Close());
        acceptor.Start();
        await acceptor.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
        listener.Dispose();

        // The port is free again: nothing in the ring still holds the listening socket.
        using var again = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        again.Bind(endPoint);
    }

    private static Socket Listen()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(64);
        return listener;
    }

    /// <summary>
    /// One client: <paramref name="rounds"/> random messages (<paramref name="framed"/>: with an 8-byte header announcing
    /// the length, as NVMe/TCP PDUs), each sent in odd-sized pieces and checked to come back whole.
    /// </summary>
    private static async Task EchoRoundsAsync(int port, int seed, int rounds, bool framed)
    {
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(IPAddress.Loopback, port);
        var rng = new Random(seed);
        for (int round = 0; round < rounds; round++)
        {
            var bytes = new byte[(framed ? 8 : 0) + rng.Next(1, 300_000)];
            rng.NextBytes(bytes);
            if (framed) BitConverter.TryWriteBytes(bytes.AsSpan(4), bytes.Length);
            var send = SendInPieces(client, bytes, rng);
            var back = new byte[bytes.Length];
            int got = 0;
            while (got < back.Length) got += await client.ReceiveAsync(back.AsMemory(got), SocketFlags.None);
            await send;
            Assert.Equal(bytes, back);
        }
    }

    private static async Task SendInPieces(Socket client, byte[] bytes, Random rng)
    {
        for (int sent = 0; sent < bytes.Length;)
        {
            int piece = Math.Min(bytes.Length - sent, rng.Next(1, 70_000));
            sent += await client.SendAsync(bytes.AsMemory(sent, piece), SocketFlags.None);
        }
    }

    /// <summary>
    /// Echoes through a multishot receive into the shard's provided buffers. Received bytes queue in managed memory
    /// and go out through one send at a time; with <c>pauseEvery</c> &gt; 0, every that-many receives it cancels its
    /// receive and re-arms only once the queued bytes are sent (the target's back-pressure).
    /// </summary>
    private sealed unsafe class SelectEcho(Shard shard, TcpSocket socket, int pauseEvery) : IShardWork, IReceiveHandler
    {
        private const byte OpRecv = 1, OpSend = 2, OpCancel = 3;
        private readonly NativeBuffer _out = new(64 * 1024);
        private readonly Queue<byte> _queued = new();
        private int _token, _receives;
        private bool _receiving, _sending, _pausing, _ended;

        public int Pauses;

        public void Execute()
        {
            _token = shard.Register(this);
            Arm();
        }

        public void OnReceived(byte op, ReadOnlySpan<byte> data, bool more)
        {
            _receiving = more;
            foreach (byte b in data) _queued.Enqueue(b);
            if (pauseEvery > 0 && ++_receives % pauseEvery == 0 && _receiving && !_pausing)
            {
                shard.SubmitCancel(_token, OpRecv, OpCancel);
                _pausing = true;
                Pauses++;
            }
            Send();
            if (!_receiving && !_pausing) Arm();
        }

        public void OnCompletion(byte op, int result, bool more)
        {
            switch (op)
            {
                case OpRecv:
                    // Out of buffers, or our own cancel: re-armed below. Anything else: the client closed.
                    _receiving = false;
                    _ended |= result != -Duroslight.Core.Interop.LibC.ENOBUFS && result != -Duroslight.Core.Interop.LibC.ECANCELED;
                    break;
                case OpSend:
                    _sending = false;
                    for (int i = 0; i < result; i++) _queued.Dequeue();
                    Send();
                    break;
                case OpCancel:
                    _pausing = false;
                    break;
            }
            if (_ended)
            {
                if (_receiving || _sending || _pausing) return;
                shard.Unregister(_token);
                socket.Close();
                _out.Free();
                return;
            }
            if (!_receiving && !_pausing && _queued.Count == 0) Arm();
        }

        private void Arm()
        {
            shard.SubmitReceiveSelect(socket.Fd, _token, OpRecv);
            _receiving = true;
        }

        private void Send()
        {
            if (_sending || _queued.Count == 0) return;
            int n = 0;
            foreach (byte b in _queued)
            {
                if (n == _out.Length) break;
                _out.Pointer[n++] = b;
            }
            shard.SubmitSend(socket.Fd, _out.Pointer, n, _token, OpSend);
            _sending = true;
        }
    }

    /// <summary>Receives into a native buffer and sends back what came in before receiving again.</summary>
    private sealed unsafe class Echo(Shard shard, TcpSocket socket) : IShardWork, IRingHandler
    {
        private const byte OpRecv = 1, OpSend = 2;
        private readonly NativeBuffer _buffer = new(64 * 1024);
        private int _token;
        private int _pending, _offset;

        public void Execute()
        {
            _token = shard.Register(this);
            shard.SubmitReceive(socket.Fd, _buffer.Pointer, _buffer.Length, _token, OpRecv);
        }

        public void OnCompletion(byte op, int result, bool more)
        {
            if (result <= 0)
            {
                shard.Unregister(_token);
                socket.Close();
                _buffer.Free();
                return;
            }
            if (op == OpRecv)
            {
                _pending = result;
                _offset = 0;
            }
            else
            {
                _offset += result;
                _pending -= result;
            }
            if (_pending > 0) shard.SubmitSend(socket.Fd, _buffer.Pointer + _offset, _pending, _token, OpSend);
            else shard.SubmitReceive(socket.Fd, _buffer.Pointer, _buffer.Length, _token, OpRecv);
        }
    }
}
