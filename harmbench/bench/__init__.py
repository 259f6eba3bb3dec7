"""harmbench.bench"""
