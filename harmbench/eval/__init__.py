"""harmbench.eval"""
