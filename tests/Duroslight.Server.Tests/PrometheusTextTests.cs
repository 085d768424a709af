using Duroslight.Server.Metrics;
using Xunit;

namespace Duroslight.Server.Tests;

public sealed class PrometheusTextTests
{
    [Fact]
    public void Writes_help_type_and_escaped_labels()
    {
        var text = new PrometheusText()
            .Family("x_total", "counter", "A help with \\ and\nnewline.")
            .Sample("x_total", 3, ("a", "q\"uote"), ("b", "back\\slash"))
            .Sample("x_total", 0.5)
            .ToString();
        Assert.Equal(
            "# HELP x_total A help with \\\\ and\\nnewline.\n# TYPE x_total counter\n" +
            "x_total{a=\"q\\\"uote\",b=\"back\\\\slash\"} 3\nx_total 0.5\n", text);
    }
}
