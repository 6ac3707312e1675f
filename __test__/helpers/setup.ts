import { afterAll } from 'vitest'
import { removeTmpDirs } from './tmp'

afterAll(removeTmpDirs)
