namespace Duroslight.Protocol.Engine;

/// <summary>
/// What a Reservation Acquire with Preempt and Abort waits for before it completes (8.19): every queue of the preempted
/// hosts has aborted its commands to the namespace that storage has not seen yet, and the ones storage has finished.
/// A count of holds (one for the setup, one per queue visit, one per executing command); the last release runs
/// <c>done</c>, on whichever thread releases it. Rare (one per such command): a lock, no cleverness.
/// </summary>
internal sealed class AbortFence(Action done)
{
    private readonly object _gate = new();
    private int _holds = 1;
    private Action? _done = done;

    public void Hold()
    {
        lock (_gate) _holds++;
    }

    /// <summary>Makes <paramref name="slot"/> (an executing command) hold the fence until it is released.</summary>
    public void HoldUntilReleased(CommandSlot slot)
    {
        Hold();
        (slot.Fences ??= []).Add(this);
    }

    public void Signal()
    {
        Action? done = null;
        lock (_gate)
        {
            if (--_holds == 0)
            {
                done = _done;
                _done = null;
            }
        }
        done?.Invoke();
    }
}
