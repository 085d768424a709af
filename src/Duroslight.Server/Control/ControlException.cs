namespace Duroslight.Server.Control;

/// <summary>A refused control request: an HTTP-style status (400, 404, 409, 501...) and a message for the operator.</summary>
public sealed class ControlException(int status, string message) : Exception(message)
{
    public int Status { get; } = status;

    public static ControlException BadRequest(string message) => new(400, message);
    public static ControlException NotFound(string message) => new(404, message);
    public static ControlException Conflict(string message) => new(409, message);
}
