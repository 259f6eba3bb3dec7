"""harmbench.build"""
