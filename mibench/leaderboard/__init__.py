"""mibench.leaderboard."""
