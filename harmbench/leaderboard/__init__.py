"""harmbench.leaderboard"""
