using System.Net;
using System.Net.Sockets;

namespace Duroslight.Server.Hosting;

/// <summary>TCP listening sockets that refuse a port another socket already listens on.</summary>
public static class ListenSocket
{
    // Linux's SOL_SOCKET and SO_REUSEADDR (the generic values, on x86-64 and arm64 alike).
    private const int SolSocket = 1, SoReuseAddr = 2;

    /// <summary>
    /// Binds and listens on <paramref name="endPoint"/>. .NET's <c>ReuseAddress</c> is SO_REUSEADDR plus
    /// SO_REUSEPORT on Linux, which lets a second process bind the same port and the kernel split connections
    /// between the two (an admin queue on one, its I/O queue on the other). Plain SO_REUSEADDR only lets a restart
    /// bind over the last run's TIME_WAIT connections; a live listener still makes the bind fail.
    /// </summary>
    /// <exception cref="IOException">the port is in use or cannot be bound; the message names it and says what it was for.</exception>
    public static Socket Open(IPEndPoint endPoint, string purpose, int backlog)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.SetRawSocketOption(SolSocket, SoReuseAddr, BitConverter.GetBytes(1));
            socket.Bind(endPoint);
            socket.Listen(backlog);
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            string why = e.SocketErrorCode == SocketError.AddressAlreadyInUse
                ? "the address is already in use (another process listens on it)"
                : e.Message;
            throw new IOException($"cannot listen on {endPoint} for {purpose}: {why}", e);
        }
    }
}
