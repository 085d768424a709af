using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Hosting;

/// <summary>
/// sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace).
/// Does nothing when the variable is unset (not started by systemd with Type=notify).
/// </summary>
public static class SystemdNotify
{
    public static void Send(string message, ILogger logger)
    {
        string? path = Environment.GetEnvironmentVariable("NOTIFY_SOCKET");
        if (string.IsNullOrEmpty(path)) return;
        if (path[0] == '@') path = "\0" + path[1..];
        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            socket.Connect(new UnixDomainSocketEndPoint(path));
            socket.Send(Encoding.UTF8.GetBytes(message));
        }
        catch (SocketException e)
        {
            logger.LogWarning("sd_notify to {Socket} failed: {Error}", path, e.Message);
        }
    }
}
